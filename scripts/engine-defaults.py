"""Measure the engine's context settings on this CPU with llama.cpp's `llama-batched-bench`: the Q8_0 copy
of Q4_1 weights, flash attention, the KV cache type, n_ubatch and the thread count, each changed alone from
the engine's defaults, at 1, 4, 8 and 16 branches and two context lengths. Prints a markdown table (decode
and prefill tok/s) to paste into docs/results.md beside the CPU's name.

    make bench-tools && .venv/bin/python scripts/engine-defaults.py [--repeats 2]   # an hour on 2 cores

Two workloads, the two the engine sees: one request's branches sharing one prompt (`-pps`, the prompt is
prefilled once), and as many requests as branches, each with a prompt of its own (the unified cache then
holds every request's cells, which attention must skip). Run it on a machine with nothing else running.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

from cepo.backends.llama import EngineConfig
from cepo.backends.model_files import default_model_path
from cepo.backends.weights import cpu_weights
from cepo.bench.native import parse_batched_bench, run_tool

BRANCHES = [1, 4, 8, 16]
NEW_TOKENS = 64
# Prompt tokens: with the new tokens, about 600 and 2,000 cells of context per branch.
PROMPTS = (480, 1870)


@dataclass(frozen=True)
class Knobs:
    flash_attn: bool = EngineConfig().flash_attn
    kv_type: str = "f16"
    n_ubatch: int = EngineConfig().n_ubatch
    threads: int = 2
    reencoded: bool = EngineConfig().reencode_q4_1  # the default model's Q8_0 copy, or its Q4_1 file

    def args(self) -> list[str]:
        model = default_model_path()
        return [
            *("-m", str(cpu_weights(model) if self.reencoded else model)),
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
            "Q4_1 as it is" if self.reencoded != base.reencoded else "",
        ]
        return ", ".join(c for c in changed if c) or "defaults"


@dataclass(frozen=True)
class Workload:
    prompt: int  # prompt tokens per sequence
    shared: bool  # one prompt for all branches (-pps), or one per branch

    def describe(self) -> str:
        return f"{'one prompt' if self.shared else 'N prompts'} of {self.prompt}"


WORKLOADS = [Workload(prompt, shared) for shared in (True, False) for prompt in PROMPTS]


def measure(knobs: Knobs, work: Workload, repeats: int) -> tuple[dict[int, float], float]:
    """Median decode tok/s by branches, and the median prefill tok/s of the one-branch run."""
    decode: dict[int, list[float]] = {n: [] for n in BRANCHES}
    prefill: list[float] = []
    prompts = 1 if work.shared else max(BRANCHES)
    cells = work.prompt * prompts + NEW_TOKENS * max(BRANCHES) + 64
    for _ in range(repeats):
        args = [
            *(*knobs.args(), "-c", str(cells), "-kvu"),
            *(["-pps"] if work.shared else []),
            *("-npp", str(work.prompt), "-ntg", str(NEW_TOKENS), "-npl", ",".join(map(str, BRANCHES))),
            *("--output-format", "jsonl"),
        ]
        output = run_tool("llama-batched-bench", args)
        for n, tok_s in parse_batched_bench(output).items():
            decode[n].append(tok_s)
        prefill.append(parse_batched_bench(output, "speed_pp")[1])
    return {n: statistics.median(v) for n, v in decode.items()}, statistics.median(prefill)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 3, 4], help="thread counts beside 2")
    args = parser.parse_args()
    base = Knobs()
    # Each setting on the workloads it can change: n_ubatch only splits prompts, so only a long one shows it.
    settings = [
        *(
            (knobs, WORKLOADS)
            for knobs in (
                base,
                Knobs(reencoded=not base.reencoded),
                Knobs(flash_attn=not base.flash_attn),
                Knobs(kv_type="q8_0"),
            )
        ),
        *((Knobs(n_ubatch=size), [Workload(PROMPTS[-1], True)]) for size in (256, 1024)),
        *((Knobs(threads=t), [w for w in WORKLOADS if w.prompt == PROMPTS[0]]) for t in args.threads),
    ]
    print(f"CPU: {cpu_name()}; {default_model_path().name}; {NEW_TOKENS} new tokens per branch\n")
    print("| setting | workload | " + " | ".join(f"decode N={n}" for n in BRANCHES) + " | prefill |")
    print("|---|---|" + "---:|" * (len(BRANCHES) + 1))
    for knobs, workloads in settings:
        for work in workloads:
            decode, prefill = measure(knobs, work, args.repeats)
            cells = " | ".join(f"{decode[n]:.1f}" for n in BRANCHES)
            print(f"| {knobs.differs()} | {work.describe()} | {cells} | {prefill:.0f} |", flush=True)


if __name__ == "__main__":
    main()
