"""`cepo bench engine` beside llama.cpp's tools: reading the tools' output, the ratios, the table, and a
clear line when the tools are not built. No model and no tools here, except in the one test that runs the
real tools where `make bench-tools` has built them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cepo.backends import Sampling
from cepo.backends.base import Branch, Completion, Timings
from cepo.backends.model_files import check_model_file
from cepo.backends.weights import cpu_weights
from cepo.bench import engine as engine_bench
from cepo.bench import native
from cepo.bench.engine import BRANCHES, EngineBench
from cepo.bench.native import NativeSetup, ToolMissing, parse_batched_bench, parse_llama_bench, peer
from cepo.cli import main
from cepo.cli.bench import engine_table
from cepo.errors import CepoError

# What llama-batched-bench --output-format jsonl prints, its log lines included (they go to the same
# streams), one row per number of sequences.
BATCHED_BENCH = """\
llama_model_loader: loaded meta data with 33 key-value pairs and 272 tensors
{ not json: a log line that opens with a brace
{"n_kv_max": 16384, "n_batch": 2048, "n_ubatch": 512, "flash_attn": 1, "is_pp_shared": 1, "pp": 522, \
"tg": 128, "pl": 1, "n_kv": 650, "t_pp": 1.8, "speed_pp": 290.0, "t_tg": 3.0, "speed_tg": 42.5, "t": 4.8}
{"n_kv_max": 16384, "pp": 522, "tg": 128, "pl": 8, "speed_tg": 84.0}
{"n_kv_max": 16384, "pp": 522, "tg": 128, "pl": 16, "speed_tg": 85.75}

llama_perf_context_print:        load time =     120.00 ms
"""
# llama-bench -o jsonl: one object per test; a generation test (n_gen > 0) is not a prefill figure.
LLAMA_BENCH = """\
{"model_type": "llama 256M Q8_0", "n_prompt": 512, "n_gen": 0, "avg_ts": 601.5, "samples_ts": [600]}
{"model_type": "llama 256M Q8_0", "n_prompt": 0, "n_gen": 128, "avg_ts": 95.0}
{"model_type": "llama 256M Q8_0", "n_prompt": 8191, "n_gen": 0, "avg_ts": 310.25}
"""


def test_batched_bench_rows_give_decode_tok_s_by_sequences() -> None:
    assert parse_batched_bench(BATCHED_BENCH) == {1: 42.5, 8: 84.0, 16: 85.75}


def test_llama_bench_rows_give_prefill_tok_s_by_prompt_size() -> None:
    assert parse_llama_bench(LLAMA_BENCH) == {512: 601.5, 8191: 310.25}


def test_output_without_results_is_an_error_not_an_empty_figure() -> None:
    with pytest.raises(CepoError, match="llama-bench printed no results"):
        parse_llama_bench("main: error: unknown argument: -fa\n")


def test_a_missing_tool_says_how_to_build_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(native, "PEERS_BIN", tmp_path)
    with pytest.raises(ToolMissing) as raised:
        peer("llama-batched-bench")
    assert "llama-batched-bench is not built" in str(raised.value)
    assert raised.value.hint == "run `make bench-tools`"


def test_bench_engine_stops_at_once_with_that_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(native, "PEERS_BIN", tmp_path)
    outcome = CliRunner().invoke(main, ["bench", "engine", "--tokens", "4", "--repeats", "1"])

    assert outcome.exit_code == 1
    assert "is not built" in outcome.output and "Hint: run `make bench-tools`" in outcome.output


def figures() -> EngineBench:
    return EngineBench(
        model="m",
        threads=2,
        decode_tokens=128,
        prompt_tokens=522,
        ours_decode_tok_s=50.0,
        ours_prefill_tok_s=300.0,
        llama_decode_tok_s=40.0,
        llama_prefill_tok_s=250.0,
        aggregate_tok_s={n: 50.0 + 5 * n for n in BRANCHES},
        first_tokens_s={1: 2.0, 8: 2.5},
        native_tok_s={n: 40.0 + 5 * n for n in BRANCHES},
        long_prefill_tok_s={512: 600.0, 8191: 300.0},
        native_prefill_tok_s={512: 500.0, 8191: 400.0},
    )


def test_native_ratios_are_ours_over_the_tools() -> None:
    figures_json = figures().to_json()

    assert figures_json["native_ratio_n1"] == 55.0 / 45.0
    assert figures_json["native_ratio_n8"] == 90.0 / 80.0
    assert figures_json["native_ratio_n16"] == 130.0 / 120.0
    assert figures_json["prefill_native_ratio"] == {512: 1.2, 8191: 0.75}
    assert figures_json["speedup_n8"] == 90.0 / 55.0 and figures_json["prefill_ratio_n8"] == 1.25
    assert "reference" not in figures_json  # no constant measured elsewhere


def test_the_table_has_a_row_per_figure_with_both_peers() -> None:
    table = engine_table(figures())

    labels = list(table.columns[0].cells)
    assert labels[:2] == ["decode tok/s, 1 stream", "prefill tok/s, 522 tokens"]
    assert labels[2:] == [f"aggregate tok/s, N={n}" for n in BRANCHES] + [
        "prefill tok/s, 512 tokens",
        "prefill tok/s, 8191 tokens",
    ]
    n8 = labels.index("aggregate tok/s, N=8")
    assert [list(column.cells)[n8] for column in table.columns[1:4]] == ["90.0", "80.0", "1.12x"]


@pytest.fixture
def tools_built() -> None:
    """Skips where llama.cpp's tools are not built: the test suite never builds them."""
    try:
        peer("llama-batched-bench")
        peer("llama-bench")
    except ToolMissing as missing:
        pytest.skip(f"{missing} ({missing.hint}; the test suite never builds them)")


@pytest.mark.model
def test_the_real_tools_run_at_a_tiny_workload(tools_built: None) -> None:
    setup = NativeSetup(cpu_weights(check_model_file(None)), 2, 1024, 512, 256, True)

    assert set(native.batched_bench(setup, prompt_tokens=32, tokens=4, branches=[1, 2])) == {1, 2}
    assert set(native.llama_bench_prefill(setup, [64], repeats=1)) == {64}


@pytest.mark.model
def test_bench_engine_runs_side_by_side_with_the_tools(tools_built: None, tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    args = ["bench", "engine", "--tokens", "4", "--repeats", "2", "--prefill", "64", "--json", str(out)]
    outcome = CliRunner().invoke(main, args)

    assert outcome.exit_code == 0, outcome.output
    figures_json = json.loads(out.read_text())
    assert {f"native_ratio_n{n}" for n in BRANCHES} <= set(figures_json)
    assert all(figures_json[f"native_ratio_n{n}"] > 0 for n in BRANCHES)
    [size] = figures_json["prefill_native_ratio"]  # the long prompt: the most whole words within 64 tokens
    assert 0 < int(size) <= 64


class FakeEngine:
    """Just what the side-by-side rounds call; every run is logged, and takes one second per token."""

    max_branch_len = 8192

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def clear_cache(self) -> None:
        pass

    def tokenize_prompt(self, prompt: str) -> list[int]:
        return [0] * len(prompt.split())

    async def generate(self, prompt: str, n: int, sampling: Sampling) -> Completion:
        self.log.append("ours")
        timings = Timings(prefill_s=1.0, first_token_s=1.0, decode_s=float(sampling.max_tokens))
        branches = [Branch(i, "x", sampling.max_tokens + 1, "length", timings) for i in range(n)]
        return Completion(branches, prompt_tokens=len(prompt.split()))


def side_by_side(
    monkeypatch: pytest.MonkeyPatch, repeats: int, tool_branches: tuple[int, ...] = BRANCHES
) -> tuple[EngineBench, list[str]]:
    log: list[str] = []

    def tool(name: str) -> Callable[..., dict[int, float]]:
        def run(setup: NativeSetup, *args: Any, **_: Any) -> dict[int, float]:
            log.append(name)
            sizes = args[0] if name == "llama-bench" else tool_branches
            return {size: 10.0 for size in sizes}

        return run

    monkeypatch.setattr(engine_bench, "batched_bench", tool("llama-batched-bench"))
    monkeypatch.setattr(engine_bench, "llama_bench_prefill", tool("llama-bench"))
    result = EngineBench(model="m", threads=2, decode_tokens=4)
    setup = NativeSetup(Path("m.gguf"), 2, 4096, 512, 256, True)
    asyncio.run(engine_bench._bench_side_by_side(FakeEngine(log), setup, result, repeats, (64,)))  # type: ignore[arg-type]
    return result, log


def test_the_side_that_goes_first_swaps_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    result, log = side_by_side(monkeypatch, repeats=2)
    rounds = [name for i, name in enumerate(log) if i == 0 or name != log[i - 1]]

    # warm-up, round 1 ours then the tools, round 2 the tools then ours
    assert rounds == [
        "ours",
        "llama-batched-bench",
        "llama-bench",
        "llama-batched-bench",
        "llama-bench",
        "ours",
    ]
    assert result.aggregate_tok_s == {n: n * 4 / 4.0 for n in BRANCHES}  # n branches x 4 tokens in 4 s
    assert result.native_tok_s == {n: 10.0 for n in BRANCHES}
    assert set(result.long_prefill_tok_s) == set(result.native_prefill_tok_s)


def test_a_branch_count_the_tool_skipped_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CepoError, match=r"no figure for \[16\]"):
        side_by_side(monkeypatch, repeats=1, tool_branches=(1, 2, 4, 8))
