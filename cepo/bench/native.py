"""llama.cpp's own tools, run at cepo's workload: the peers its engine figures are measured against.

`make bench-tools` builds `llama-batched-bench`, `llama-bench` and `llama-server` from the vendored source
of the installed llama-cpp-python, with the wheel's flags, and links them into the peers' venv
(`.venv/peers/bin`), next to optillm. Both benchmark tools are asked for JSON lines, read line by line: the
lines that are not results (logs, the model's metadata) are skipped, and a run that printed none fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cepo.backends.llama import LlamaEngine
from cepo.errors import CepoError

PEERS_BIN = Path(sys.prefix) / "peers" / "bin"


class ToolMissing(CepoError):
    """A peer the benchmark runs is not built or not installed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not built (looked in {PEERS_BIN})", hint="run `make bench-tools`")


def peer(name: str) -> Path:
    """The path of a peer's executable in the peers' venv, or ToolMissing."""
    path = PEERS_BIN / name
    if not path.exists():
        raise ToolMissing(name)
    return path


@dataclass(frozen=True)
class NativeSetup:
    """What the tools must share with the engine for their figures to compare: the same file, threads
    and context layout (one unified cache of `n_ctx` cells, flash attention on)."""

    model: Path
    threads: int
    n_ctx: int
    n_batch: int
    n_ubatch: int
    flash_attn: bool
    kv_type: str = "f16"  # the engine's cache type; scripts/engine-defaults.py tries others

    @classmethod
    def of(cls, engine: LlamaEngine) -> NativeSetup:
        config = engine.config
        return cls(
            engine.weights_path,
            engine.threads,
            engine.n_cells,
            config.n_batch,
            config.n_ubatch,
            config.flash_attn,
        )

    def args(self) -> list[str]:
        """The flags both tools spell alike."""
        return [
            *("-m", str(self.model), "-t", str(self.threads)),
            *("-b", str(self.n_batch), "-ub", str(self.n_ubatch), "-fa", "on" if self.flash_attn else "off"),
            *("-ctk", self.kv_type, "-ctv", self.kv_type),
        ]


def batched_bench(
    setup: NativeSetup, prompt_tokens: int, tokens: int, branches: list[int]
) -> dict[int, float]:
    """Decode tok/s of `llama-batched-bench` for each number of branches of one shared prompt (-pps), each
    generating `tokens`: `n` sequences decode `tokens` steps together, as the engine's branches do."""
    return parse_batched_bench(batched_bench_output(setup, prompt_tokens, tokens, branches))


def batched_bench_output(
    setup: NativeSetup, prompt_tokens: int, tokens: int, branches: list[int], shared: bool = True
) -> str:
    """`llama-batched-bench`'s JSON lines, for branches of one prompt (`shared`, -pps: prefilled once), or
    for as many sequences as branches, each with a prompt of its own."""
    return run_tool(
        "llama-batched-bench",
        [
            *setup.args(),
            *("-c", str(setup.n_ctx), "-kvu", *(["-pps"] if shared else [])),
            *("-npp", str(prompt_tokens), "-ntg", str(tokens), "-npl", ",".join(map(str, branches))),
            *("--output-format", "jsonl"),
        ],
    )


def parse_batched_bench(output: str, figure: str = "speed_tg") -> dict[int, float]:
    """{branches: tok/s} from `llama-batched-bench --output-format jsonl`: decode's (speed_tg), or the
    prompt's prefill (speed_pp)."""
    rows = _json_lines(output, "llama-batched-bench", required=("pl", figure))
    return {int(row["pl"]): float(row[figure]) for row in rows}


def llama_bench_prefill(setup: NativeSetup, sizes: list[int], repeats: int) -> dict[int, float]:
    """Prefill tok/s of `llama-bench -p` at each prompt size (mean of `repeats`; no tokens generated)."""
    output = run_tool(
        "llama-bench",
        [
            *setup.args(),
            *("-p", ",".join(map(str, sizes)), "-n", "0", "-r", str(repeats), "-o", "jsonl"),
        ],
    )
    return parse_llama_bench(output)


def parse_llama_bench(output: str) -> dict[int, float]:
    """{prompt tokens: tok/s} of the prompt-processing tests in `llama-bench -o jsonl` output."""
    rows = _json_lines(output, "llama-bench", required=("n_prompt", "n_gen", "avg_ts"))
    return {int(row["n_prompt"]): float(row["avg_ts"]) for row in rows if row["n_gen"] == 0}


def run_tool(name: str, args: list[str]) -> str:
    """A peer tool's output (stdout then stderr); a failed run is a CepoError with its last lines."""
    done = subprocess.run([str(peer(name)), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CepoError(f"{name} exited with status {done.returncode}: {' / '.join(last)}")
    return done.stdout + done.stderr


def _json_lines(output: str, name: str, required: tuple[str, ...]) -> list[dict[str, object]]:
    rows = []
    for line in output.splitlines():
        if not line.lstrip().startswith("{"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a log line that happens to start with a brace
        if isinstance(row, dict) and all(key in row for key in required):
            rows.append(row)
    if not rows:
        raise CepoError(f"{name} printed no results", hint=f"run it by hand: {PEERS_BIN / name} --help")
    return rows
