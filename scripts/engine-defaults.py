"""Measure the engine's context settings on this CPU with llama.cpp's `llama-batched-bench`: flash attention,
the KV cache type, n_ubatch and the thread count, each changed alone from the engine's defaults, at 1, 4, 8
and 16 branches and two context lengths. Prints a markdown table (decode and prefill tok/s) to paste into
docs/results.md beside the CPU's name.

    make bench-tools && .venv/bin/python scripts/engine-defaults.py [--repeats 2]

Two workloads, the two the engine sees: one request's branches sharing one prompt (`-pps`, the prompt is
prefilled once), and as many requests as branches, each with a prompt of its own (the unified cache then
holds every request's cells, which attention must skip). Run it on a machine with nothing else running.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from dataclasses import dataclass

from cepo.backends.llama import EngineConfig
from cepo.backends.model_files import default_model_path
from cepo.backends.weights import cpu_weights
from cepo.bench.native import parse_batched_bench, run_tool

BRANCHES = [1, 4, 8, 16]
NEW_TOKENS = 128
# Prompt tokens: with the new tokens, about 600 and 2,000 cells of context per branch.
PROMPTS = (480, 1870)


@dataclass(frozen=True)
class Knobs:
    flash_attn: bool = EngineConfig().flash_attn
    kv_type: str = "f16"
    n_ubatch: int = EngineConfig().n_ubatch
    threads: int = 2

    def args(self) -> list[str]:
        return [
            *("-fa", "on" if self.flash_attn else "off", "-ctk", self.kv_type, "-ctv", self.kv_type),
            *("-ub", str(self.n_ubatch), "-b", str(max(self.n_ubatch, 2048)), "-t", str(self.threads)),
        ]

    def differs(self) -> str:
        """What this setting changes from the defaults, in a few words."""
        base = Knobs()
        changed = [
            f"flash attention {'on' if self.flash_attn else 'off'}"
            if self.flash_attn != base.flash_attn
            else "",
            f"KV {self.kv_type}" if self.kv_type != base.kv_type else "",
            f"n_ubatch {self.n_ubatch}" if self.n_ubatch != base.n_ubatch else "",
            f"{self.threads} threads" if self.threads != base.threads else "",
        ]
        return ", ".join(c for c in changed if c) or "defaults"


def measure(
    model: str, knobs: Knobs, prompt: int, shared: bool, repeats: int
) -> tuple[dict[int, float], float]:
    """Median decode tok/s by branches, and the median prefill tok/s of the one-branch run."""
    decode: dict[int, list[float]] = {n: [] for n in BRANCHES}
    prefill: list[float] = []
    cells = (prompt + NEW_TOKENS) * (1 if shared else max(BRANCHES)) + NEW_TOKENS * max(BRANCHES)
    for _ in range(repeats):
        args = [
            *("-m", model, *knobs.args(), "-c", str(cells), "-kvu"),
            *(["-pps"] if shared else []),
            *("-npp", str(prompt), "-ntg", str(NEW_TOKENS), "-npl", ",".join(map(str, BRANCHES))),
            *("--output-format", "jsonl"),
        ]
        output = run_tool("llama-batched-bench", args)
        for n, tok_s in parse_batched_bench(output).items():
            decode[n].append(tok_s)
        prefill.append(parse_batched_bench(output, "speed_pp")[1])
    return {n: statistics.median(v) for n, v in decode.items()}, statistics.median(prefill)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 3, 4], help="thread counts beside 2")
    args = parser.parse_args()
    model = str(cpu_weights(default_model_path()))
    settings = [
        Knobs(),
        Knobs(flash_attn=not Knobs().flash_attn),
        Knobs(kv_type="q8_0"),
        Knobs(n_ubatch=256),
        Knobs(n_ubatch=1024),
        *(Knobs(threads=t) for t in args.threads),
    ]
    print(f"CPU: {platform.processor() or platform.machine()}; model {model}; {NEW_TOKENS} new tokens\n")
    print("| setting | workload | prompt | " + " | ".join(f"decode N={n}" for n in BRANCHES) + " | prefill |")
    print("|---|---|---:|" + "---:|" * (len(BRANCHES) + 1))
    for shared in (True, False):
        for prompt in PROMPTS if shared else PROMPTS[:1]:
            for knobs in settings:
                decode, prefill = measure(model, knobs, prompt, shared, args.repeats)
                workload = "one prompt" if shared else "N prompts"
                cells = " | ".join(f"{decode[n]:.1f}" for n in BRANCHES)
                print(f"| {knobs.differs()} | {workload} | {prompt} | {cells} | {prefill:.0f} |", flush=True)


if __name__ == "__main__":
    main()
