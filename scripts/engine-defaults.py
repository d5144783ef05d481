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
from dataclasses import dataclass, replace
from pathlib import Path

from cepo.backends.llama import EngineConfig
from cepo.backends.model_files import default_model_path
from cepo.backends.weights import cpu_weights
from cepo.bench.native import NativeSetup, batched_bench_output, parse_batched_bench

BRANCHES = [1, 4, 8, 16]
NEW_TOKENS = 64
# Prompt tokens: with the new tokens, about 600 and 2,000 cells of context per branch.
PROMPTS = (480, 1870)


@dataclass(frozen=True)
class Workload:
    prompt: int  # prompt tokens per sequence
    shared: bool  # one prompt for all branches (-pps), or one per branch

    def describe(self) -> str:
        return f"{'one prompt' if self.shared else 'N prompts'} of {self.prompt}"

    def cells(self) -> int:
        prompts = 1 if self.shared else max(BRANCHES)
        return self.prompt * prompts + NEW_TOKENS * max(BRANCHES) + 64


WORKLOADS = [Workload(prompt, shared) for shared in (True, False) for prompt in PROMPTS]


def defaults() -> NativeSetup:
    """The engine's own settings (EngineConfig's defaults, a thread per core, its Q8_0 copy)."""
    config = EngineConfig()
    return NativeSetup(
        config.weights(default_model_path()),
        config.threads,
        config.n_ctx,
        config.n_batch,
        config.n_ubatch,
        config.flash_attn,
    )


def settings(threads: list[int]) -> list[tuple[str, NativeSetup, list[Workload]]]:
    """Each setting, on the workloads it can change: n_ubatch only splits prompts, so a long one shows it."""
    base = defaults()
    model = default_model_path()
    other_weights = model if base.model != model else cpu_weights(model)
    return [
        ("defaults", base, WORKLOADS),
        (f"{other_weights.name} instead", replace(base, model=other_weights), WORKLOADS),
        (
            f"flash attention {'off' if base.flash_attn else 'on'}",
            replace(base, flash_attn=not base.flash_attn),
            WORKLOADS,
        ),
        ("KV q8_0", replace(base, kv_type="q8_0"), WORKLOADS),
        *(
            (f"n_ubatch {size}", replace(base, n_ubatch=size), [Workload(PROMPTS[-1], True)])
            for size in (base.n_ubatch // 2, base.n_ubatch * 2)
        ),
        *(
            (
                f"{t} thread{'s' if t > 1 else ''}",
                replace(base, threads=t),
                [w for w in WORKLOADS if w.prompt == PROMPTS[0]],
            )
            for t in threads
        ),
    ]


def measure(setup: NativeSetup, work: Workload, repeats: int) -> tuple[dict[int, float], float]:
    """Median decode tok/s by branches, and the median prefill tok/s of the one-branch run."""
    decode: dict[int, list[float]] = {}
    prefill: list[float] = []
    for _ in range(repeats):
        sized = replace(setup, n_ctx=work.cells())
        output = batched_bench_output(sized, work.prompt, NEW_TOKENS, BRANCHES, shared=work.shared)
        for n, tok_s in parse_batched_bench(output).items():
            decode.setdefault(n, []).append(tok_s)
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
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4], help="thread counts to try")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; {default_model_path().name}; {NEW_TOKENS} new tokens per branch\n")
    print("| setting | workload | " + " | ".join(f"decode N={n}" for n in BRANCHES) + " | prefill N=1 |")
    print("|---|---|" + "---:|" * (len(BRANCHES) + 1))
    for label, setup, workloads in settings(args.threads):
        for work in workloads:
            decode, prefill = measure(setup, work, args.repeats)
            cells = " | ".join(f"{decode[n]:.1f}" if n in decode else "-" for n in BRANCHES)
            print(f"| {label} | {work.describe()} | {cells} | {prefill:.0f} |", flush=True)


if __name__ == "__main__":
    main()
