"""`cepo eval` and `cepo eval report` through click, with a fake backend and a scripted `solve`."""

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cepo.backends import Message
from cepo.cli.evaluate import eval_group
from cepo.methods.effort import EFFORTS
from cepo.methods.events import MethodResult, StageUsage
from cepo.methods.settings import ConfigError


class FakeBackend:
    model = "fake-model"

    async def aclose(self) -> None:
        pass


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replaces the backend and the methods; returns the methods called, in order."""
    calls: list[str] = []

    async def solve(method: str, backend: Any, messages: list[Message], **_: Any) -> MethodResult:
        calls.append(method)
        usage = StageUsage(requests=1, prompt_tokens=30, completion_tokens=10 if method == "plain" else 90)
        return MethodResult(
            method=method,
            kind="number",
            answer="The answer is 1.",
            extracted="1",
            chosen=0,
            candidates=[],
            stages={"answer": usage},
            seconds=0.5,
        )

    monkeypatch.setattr("cepo.cli.options.open_backend", lambda **_: FakeBackend())
    monkeypatch.setattr("cepo.cli.evaluate.solve", solve)
    return calls


def test_eval_runs_resumes_and_reports(tmp_path: Path, solved: list[str]) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("- {bestofn_n: 2}\n- {bestofn_n: 4}\n")
    out = tmp_path / "out"
    args = ["--dataset", "letters", "--limit", "3", "--methods", "plain,cepo", "--config", str(sweep)]
    args += ["--out", str(out), "--concurrency", "2"]

    first = CliRunner().invoke(eval_group, args)
    assert first.exit_code == 0, first.output
    assert len(solved) == 3 * (2 + 1)  # cepo in both settings; plain, which has no bestofn_n, once
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(row["method"], row["settings"].get("bestofn_n")) for row in rows} == {
        ("cepo", 2),
        ("cepo", 4),
        ("plain", None),
    }
    assert "| fake-model | cepo (bestofn_n=4) | 3 |" in first.output
    assert "| fake-model | plain | 3 |" in first.output
    assert (out / "letters-accuracy-vs-tokens.png").stat().st_size > 0

    again = CliRunner().invoke(eval_group, args)
    assert again.exit_code == 0, again.output
    assert len(solved) == 9  # nothing left to run

    report = CliRunner().invoke(eval_group, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert report.output == (out / "report.md").read_text() + "\n"


def test_threads_go_to_the_embedded_engine(
    tmp_path: Path, solved: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[dict[str, Any]] = []

    def open_backend(**options: Any) -> FakeBackend:
        opened.append(options)
        return FakeBackend()

    monkeypatch.setattr("cepo.cli.options.open_backend", open_backend)
    args = ["--dataset", "letters", "--limit", "1", "--methods", "plain", "--threads", "1"]
    result = CliRunner().invoke(eval_group, [*args, "--out", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert [options["threads"] for options in opened] == [1]


def test_skipped_bad_lines_are_named_on_stderr(tmp_path: Path, solved: list[str]) -> None:
    data = tmp_path / "crux.jsonl"
    data.write_text('{"id": "a", "code": "def f(x):\\n    return x", "input": "1", "output": "1"}\n{oops\n')
    args = [
        "--dataset",
        "cruxeval-o",
        "--path",
        str(data),
        "--methods",
        "plain",
        "--out",
        str(tmp_path / "o"),
    ]

    stopped = CliRunner().invoke(eval_group, args)
    assert f"{data}:2: not valid JSON" in str(stopped.exception)
    assert solved == []

    skipped = CliRunner().invoke(eval_group, [*args, "--on-bad-line", "skip"])
    assert skipped.exit_code == 0, skipped.output
    assert f"skipped {data}:2: not valid JSON" in skipped.stderr
    assert solved == ["plain"]


def test_efforts_run_the_method_and_settings_of_each_level(tmp_path: Path, solved: list[str]) -> None:
    out = tmp_path / "out"
    args = ["--dataset", "letters", "--limit", "2", "--efforts", "none,low,high", "--out", str(out)]
    result = CliRunner().invoke(eval_group, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ran = {(row["method"], json.dumps(row["settings"], sort_keys=True)) for row in rows}
    wanted = {
        (EFFORTS[n].method, json.dumps(EFFORTS[n].options, sort_keys=True)) for n in ("none", "low", "high")
    }
    assert ran == wanted
    assert len(rows) == 2 * len(wanted)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "cruxeval-i", "--out", "o"], "needs --path FILE"),
        (["--dataset", "letters", "--methods", "plain,magic", "--out", "o"], "unknown method(s) magic"),
        (["--dataset", "letters"], "--dataset and --out are needed"),
        (["--dataset", "nope", "--out", "o"], "'nope' is not one of"),
        (["--dataset", "letters", "--efforts", "low,max", "--out", "o"], "unknown effort(s) max"),
        (
            ["--dataset", "letters", "--efforts", "low", "--config", __file__, "--out", "o"],
            "leave out --methods and --config",
        ),
        (
            ["--dataset", "letters", "--efforts", "low", "--methods", "plain", "--out", "o"],
            "leave out --methods",
        ),
        (["--dataset", "letters", "--efforts", ",", "--out", "o"], "no effort given"),
    ],
)
def test_usage_errors(args: list[str], message: str, solved: list[str]) -> None:
    result = CliRunner().invoke(eval_group, args)
    assert result.exit_code == 2
    assert message in result.output
    assert solved == []


def test_an_invalid_setting_stops_before_running(tmp_path: Path, solved: list[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("bestofn_nn: 3\n")
    result = CliRunner().invoke(
        eval_group, ["--dataset", "letters", "--config", str(config), "--out", str(tmp_path / "o")]
    )
    assert isinstance(result.exception, ConfigError)
    assert "bestofn_nn: unknown setting" in str(result.exception)
    assert solved == []
