"""`cepo bench method` on a scripted backend: the figures come from the runs' own results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.progress import Progress
from scripted_backend import ScriptedBackend, prompt_text
from test_methods_cepo import EXECUTE, FINAL, FIXED, PLAN, REFINE

from cepo.bench.method import (
    SEQUENTIAL,
    WARM_UP,
    MethodBench,
    MethodFigures,
    bench_methods,
    interpolate,
    method_table,
)
from cepo.cli import options
from cepo.cli.bench import bench

SCRIPT = [(PLAN, "1. Count. (high)"), (EXECUTE, "Answer: 3"), (REFINE, "Answer: 3"), (FINAL, "3")]
QUESTIONS = ["How many r's in strawberry?", "How many r's in error?"]


async def test_the_figures_add_up_over_questions_and_runs() -> None:
    backend = ScriptedBackend(SCRIPT)
    with Progress(disable=True) as progress:
        # The fixed fan-out: an early stop would come at another point when every call waits its turn.
        figures = await bench_methods(
            backend, ["cepo", SEQUENTIAL], QUESTIONS, FIXED, runs=2, progress=progress
        )

    cepo, sequential = figures.methods
    assert (cepo.method, cepo.runs, cepo.answers) == ("cepo", 4, ["3"] * 4)
    warm_up = [call for call in backend.calls if WARM_UP in prompt_text(call.prompt)]
    timed = [call for call in backend.calls if call not in warm_up]
    assert warm_up and all(call.sampling.max_tokens == 1 for call in warm_up)  # one-token steps
    assert (
        cepo.generated_tokens
        == sequential.generated_tokens
        == sum(b.tokens for c in timed for b in c.branches) // 2
    )
    assert set(cepo.stage_seconds) == {"plan", "execute", "refine", "final", "check"}
    assert 0 < cepo.first_token_s <= cepo.seconds and cepo.overlap > 0 and cepo.wasted_tokens == 0
    assert figures.speedup_vs_sequential == sequential.seconds / cepo.seconds
    assert cepo.live_branches is None and figures.engine_utilization is None  # no embedded engine here
    batched_plans = [call.sampling.seed for call in timed if call.rule == PLAN and call.n > 1]
    assert batched_plans == [0, 1, 0, 1]  # cepo: run 0 and run 1 of each question
    single_plans = [call.sampling.seed for call in timed if call.rule == PLAN and call.n == 1]
    assert single_plans == [*range(9), *range(1, 10)] * 2  # the sequential runs: the same seeds, in turn
    assert method_table(figures).row_count == 2


def test_interpolate_is_linear_between_points_and_flat_beyond() -> None:
    curve = {1: 60.0, 2: 80.0, 4: 100.0}
    assert [interpolate(curve, x) for x in (0.5, 1, 1.5, 3, 4, 9)] == [60, 60, 70, 90, 100, 100]


def test_engine_utilization_compares_with_the_engine_at_the_same_width() -> None:
    cepo = MethodBench("cepo", runs=1, seconds=10.0, generated_tokens=900, live_branches=3.0)
    figures = MethodFigures("m", ["q"], {}, [cepo], engine_tok_s={2: 80.0, 4: 100.0})

    assert figures.engine_at_cepo_width == 90.0
    assert figures.engine_utilization == pytest.approx(1.0)
    assert figures.speedup_vs_sequential is None


def test_the_command_prints_a_table_and_writes_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(options, "open_backend", lambda **_: ScriptedBackend(SCRIPT))
    path = tmp_path / "bench.json"
    outcome = CliRunner().invoke(bench, ["method", "--question", QUESTIONS[0], "--json", str(path)])

    assert outcome.exit_code == 0, outcome.output
    figures = json.loads(path.read_text())
    assert [m["method"] for m in figures["methods"]] == ["plain", "cepo", SEQUENTIAL]
    assert figures["speedup_vs_sequential"] > 0 and "speedup_vs_sequential" in outcome.output
    # The demo question, once per seed: the scripted model always states 3, on one line.
    assert (figures["demo_runs"], figures["demo_correct"], figures["demo_clean"]) == (5, 5, True)
    assert figures["demo_median_s"] > 0 and "demo question, 5 seeds: 5/5 right" in outcome.output
