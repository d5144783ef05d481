"""`cepo chat` and its live view, on a scripted backend."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from scripted_backend import ScriptedBackend
from test_methods_cepo import EXECUTE, FINAL, FIXED, PLAN, REFINE

from cepo.cli import chat, main, options
from cepo.cli.live import LiveView
from cepo.methods import METHODS, run
from cepo.methods.events import MethodResult

QUESTION = "What is 6 * 7?"
SCRIPT = [(PLAN, "1. Multiply. (high)"), (EXECUTE, "Answer: 42"), (REFINE, "Answer: 42"), (FINAL, "42")]


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> ScriptedBackend:
    scripted = ScriptedBackend(SCRIPT)
    monkeypatch.setattr(options, "open_backend", lambda **_: scripted)
    return scripted


def test_quiet_prints_only_the_answer(backend: ScriptedBackend) -> None:
    outcome = CliRunner().invoke(main, ["chat", QUESTION, "--quiet"])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.output == "42\n"


def test_json_prints_the_whole_result(backend: ScriptedBackend) -> None:
    outcome = CliRunner().invoke(main, ["chat", QUESTION, "--json", "--method", "self-consistency"])
    result = MethodResult.model_validate_json(outcome.output)
    assert (result.method, result.extracted, len(result.candidates)) == ("self-consistency", None, 5)


def test_the_live_view_ends_with_the_answer_and_the_totals(backend: ScriptedBackend, tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text("bestofn_n: 2\n")
    outcome = CliRunner().invoke(main, ["chat", QUESTION, "--config", str(config)])
    assert outcome.exit_code == 0, outcome.output
    assert "answer of candidate 1 of 2 (all candidates agreed)" in outcome.output
    assert "42" in outcome.output and "total" in outcome.output
    assert not any("tokens generated" in line and "answer" in line for line in outcome.output.splitlines())
    assert [call.n for call in backend.calls_to(PLAN)] == [2]


def test_a_bad_config_file_is_one_line_with_a_hint(backend: ScriptedBackend, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("planning_n: 0\n")
    outcome = CliRunner().invoke(main, ["chat", QUESTION, "--config", str(config)])
    assert outcome.exit_code == 1
    assert "planning_n" in outcome.output and "Traceback" not in outcome.output
    assert backend.calls == []


async def test_the_view_shows_each_candidates_branches_and_scores() -> None:
    view, backend = LiveView(QUESTION, METHODS["cepo"]), ScriptedBackend(SCRIPT)
    async for event in run("cepo", backend, QUESTION, {**FIXED, "bestofn_n": 2, "max_candidates": 2}):
        view.update(event)
    console = Console(width=120, record=True)
    console.print(view)
    shown = console.export_text()
    assert "candidate 1 (chosen)" in shown and "candidate 2" in shown
    assert "Plan 3 done, 3 tok" in shown and "checks and scores" in shown
    assert view.result is not None and view.tokens == backend.produced_tokens


def test_without_a_question_chat_is_a_session_that_keeps_the_conversation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted = ScriptedBackend([(r"6 \* 7", "42"), (r"times two", "84")])
    monkeypatch.setattr(options, "open_backend", lambda **_: scripted)
    outcome = CliRunner().invoke(
        main, ["chat", "--method", "plain", "--quiet"], input="What is 6 * 7?\n\nAnd times two?\nexit\n"
    )
    assert outcome.exit_code == 0, outcome.output
    assert "cepo> 42" in outcome.output and "cepo> 84" in outcome.output
    second = scripted.calls[-1].prompt
    assert [m["role"] for m in second] == ["user", "assistant", "user"]  # the first exchange came along
    assert second[1]["content"] == "42"


@pytest.mark.parametrize(
    ("effort", "method", "candidates"), [("none", "plain", 1), ("low", "cepo", 1), ("high", "cepo", 5)]
)
def test_effort_sets_cepos_compute_as_the_api_does(
    backend: ScriptedBackend, effort: str, method: str, candidates: int
) -> None:
    # The script's answers agree, so high's first wave of five settles the run.
    outcome = CliRunner().invoke(main, ["chat", QUESTION, "--json", "--effort", effort])
    assert outcome.exit_code == 0, outcome.output
    result = MethodResult.model_validate_json(outcome.output)
    assert (result.method, len(result.candidates)) == (method, candidates)


def test_a_config_file_overrides_the_effort(backend: ScriptedBackend, tmp_path: Path) -> None:
    config = tmp_path / "two.yaml"
    config.write_text("bestofn_n: 2\n")
    outcome = CliRunner().invoke(
        main, ["chat", QUESTION, "--json", "--effort", "high", "--config", str(config)]
    )
    assert len(MethodResult.model_validate_json(outcome.output).candidates) == 2  # one wave: they agree


def test_effort_is_refused_for_another_method(backend: ScriptedBackend) -> None:
    outcome = CliRunner().invoke(main, ["chat", QUESTION, "--method", "plain", "--effort", "low"])
    assert (
        outcome.exit_code == 2
        and "--effort sets the compute of --method cepo, not of plain" in outcome.output
    )
    assert backend.calls == []


def test_in_a_pipe_the_run_is_told_in_plain_lines(backend: ScriptedBackend) -> None:
    outcome = CliRunner().invoke(main, ["chat", QUESTION, "--effort", "low"])  # CliRunner's output: no TTY
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.output.splitlines()
    for line in (
        "[Plan · candidate 1] started",
        "[Plan 1 · candidate 1] done, 3 tokens",
        "[Check · candidate 1] answer '42'; votes 1",
        "[Final answer · candidate 1] done, 1 token",
        "[Chosen: candidate 1]",
    ):
        assert line in lines
    assert any(re.fullmatch(r"\[Execution · candidate 1\] ended after \d+\.\d s", line) for line in lines)
    assert lines.index("[Plan · candidate 1] started") < lines.index("[Chosen: candidate 1]")
    assert (
        "candidate 1 (chosen)" not in outcome.output
    )  # no candidate boxes, only the answer and totals after
    assert "answer of candidate 1 of 1" in outcome.output


async def test_in_a_terminal_the_run_is_the_live_view() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    method = METHODS["cepo"]
    result = await chat._watch(
        LiveView(QUESTION, method), console, method, ScriptedBackend(SCRIPT), QUESTION, {}
    )
    assert result.answer.strip().endswith("42")
    shown = screen.getvalue()
    assert "candidate 1 (chosen)" in shown and "╭" in shown
    assert "] started" not in shown
