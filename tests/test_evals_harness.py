"""The harness end to end with a scripted `solve`: scoring, concurrency, settings, samples and resume."""

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cepo.backends import Message
from cepo.checks import Checks, extract_answer
from cepo.errors import BackendUnavailable, GenerationError
from cepo.evals.base import Problem, Verdict
from cepo.evals.harness import EvalPlan, run_eval
from cepo.evals.letters import Letters, LettersProblem
from cepo.evals.results import Record, ResultsFile
from cepo.methods.events import Candidate, MethodResult, StageUsage
from cepo.methods.settings import RunSettings

METHODS = ["plain", "cepo"]


class FakeBackend:
    model = "fake-model"


@dataclass
class ScriptedSolve:
    """Answers letter questions: right for even-numbered problems, wrong for odd ones."""

    problems: list[LettersProblem]
    fail_on_call: int | None = None  # raise BackendUnavailable on this call (1-based)
    calls: list[tuple[str, str, RunSettings]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    gate: asyncio.Event | None = None  # when set up, calls wait here until `open_at` are in flight
    open_at: int = 0

    async def __call__(
        self, method: str, backend: Any, messages: list[Message], config: RunSettings, tests: Any = None
    ) -> MethodResult:
        problem = next(p for p in self.problems if p.messages == messages)
        self.calls.append((method, problem.id, config))
        if self.fail_on_call == len(self.calls):
            raise BackendUnavailable("the server went away")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.gate is not None:
            if self.in_flight >= self.open_at:
                self.gate.set()
            await asyncio.wait_for(self.gate.wait(), timeout=10)  # never opens if the runner is serial
        await asyncio.sleep(0)  # let other jobs start, as a real generation would
        self.in_flight -= 1
        right = int(problem.id.rsplit("-", 1)[1]) % 2 == 0
        answer = f"The answer is {problem.count if right else problem.count + 1}."
        usage = StageUsage(requests=1, prompt_tokens=40, completion_tokens=25, wasted_tokens=5, seconds=0.1)
        return MethodResult(
            method=method,
            kind="number",
            answer=answer,
            extracted=None,
            chosen=1,
            candidates=[],
            stages={"answer": usage},
            seconds=0.25,
        )


def plan(problems: list[LettersProblem], **overrides: Any) -> EvalPlan:
    return EvalPlan(dataset=Letters(), problems=problems, methods=METHODS, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def problems() -> list[LettersProblem]:
    return Letters().load(None, "stop").problems[:6]  # type: ignore[return-value]


def lines(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]


async def test_every_problem_and_method_is_scored_and_recorded(tmp_path: Path, problems: list) -> None:
    solve = ScriptedSolve(problems)
    records = await run_eval(
        plan(problems), backend=FakeBackend(), solve=solve, results=ResultsFile(tmp_path)
    )

    assert len(records) == len(solve.calls) == 12
    written = lines(tmp_path)
    assert [(row["problem"], row["method"]) for row in written] == [(r.problem, r.method) for r in records]
    assert {(row["problem"], row["method"]) for row in written} == {
        (p.id, m) for p in problems for m in METHODS
    }
    for row in written:
        assert row["passed"] is (int(row["problem"].rsplit("-", 1)[1]) % 2 == 0)
        assert (row["completion_tokens"], row["wasted_tokens"], row["seconds"]) == (25, 5, 0.25)
        assert row["model"] == "fake-model" and row["stages"]["answer"]["requests"] == 1
        assert row["chosen"] == 1
    wrong = next(row for row in written if not row["passed"])
    assert wrong["detail"].startswith("answered")


async def test_many_problems_are_in_flight_at_once_up_to_the_limit(tmp_path: Path, problems: list) -> None:
    solve = ScriptedSolve(problems, gate=asyncio.Event(), open_at=4)
    await run_eval(
        plan(problems), backend=FakeBackend(), solve=solve, results=ResultsFile(tmp_path), concurrency=4
    )
    assert solve.most_in_flight == 4


async def test_rerun_skips_finished_work(tmp_path: Path, problems: list) -> None:
    await run_eval(
        plan(problems), backend=FakeBackend(), solve=ScriptedSolve(problems), results=ResultsFile(tmp_path)
    )
    again = ScriptedSolve(problems)
    records = await run_eval(
        plan(problems), backend=FakeBackend(), solve=again, results=ResultsFile(tmp_path)
    )
    assert records == [] and again.calls == []
    assert len(lines(tmp_path)) == 12


async def test_interrupted_run_keeps_its_records_and_resumes_past_a_truncated_line(
    tmp_path: Path, problems: list
) -> None:
    failing = ScriptedSolve(problems, fail_on_call=5)
    with pytest.raises(BackendUnavailable):
        await run_eval(
            plan(problems), backend=FakeBackend(), solve=failing, results=ResultsFile(tmp_path), concurrency=1
        )
    kept = len(lines(tmp_path))
    assert kept >= 4  # the generations finished before the failure are on disk
    failed_job = failing.calls[4][:2]
    assert failed_job not in {(row["method"], row["problem"]) for row in lines(tmp_path)}
    with (tmp_path / "results.jsonl").open("a") as file:
        file.write('{"dataset": "letters", "problem": "letters-00')  # a line cut short by a kill

    resumed = ScriptedSolve(problems)
    await run_eval(plan(problems), backend=FakeBackend(), solve=resumed, results=ResultsFile(tmp_path))
    assert len(resumed.calls) == 12 - kept
    assert failed_job in [call[:2] for call in resumed.calls]
    keys = [Record.model_validate(row).key for row in lines(tmp_path)]
    assert len(keys) == len(set(keys)) == 12


async def test_a_generation_error_is_recorded_as_a_failure_and_the_run_goes_on(
    tmp_path: Path, problems: list
) -> None:
    async def too_long(method: str, backend: Any, messages: list[Message], **_: Any) -> MethodResult:
        raise GenerationError("prompt of 9000 tokens can never fit the context of 8192")

    records = await run_eval(
        plan(problems[:2]), backend=FakeBackend(), solve=too_long, results=ResultsFile(tmp_path)
    )
    assert len(records) == 4
    assert all(not r.passed and "can never fit" in (r.error or "") for r in records)
    assert all(r.candidates_passed == [] for r in records)  # a miss in the report's "any candidate" too


async def test_settings_sweep_and_seeded_samples(tmp_path: Path, problems: list) -> None:
    solve = ScriptedSolve(problems)
    sweep = plan(problems[:2], settings=[{"bestofn_n": 2, "seed": 7}, {"bestofn_n": 4, "seed": 7}], samples=2)
    records = await run_eval(sweep, backend=FakeBackend(), solve=solve, results=ResultsFile(tmp_path))

    # cepo runs in both settings; plain, which has no bestofn_n, once: its settings are the same in both.
    assert len(records) == 2 * 2 * (2 + 1)  # problems x samples x (cepo's settings + plain's)
    cepo_calls = {(config.bestofn_n, config.seed) for method, _, config in solve.calls if method == "cepo"}
    assert cepo_calls == {(2, 7), (2, 1007), (4, 7), (4, 1007)}
    assert {config.seed for method, _, config in solve.calls if method == "plain"} == {7, 1007}
    assert len({r.settings_hash for r in records if r.method == "cepo"}) == 2
    assert len({r.settings_hash for r in records if r.method == "plain"}) == 1
    assert {r.settings["seed"] for r in records} == {7} and all(
        "bestofn_n" not in r.settings for r in records if r.method == "plain"
    )
    assert len({r.key for r in records}) == 12


async def test_a_sweep_runs_problem_by_problem_so_a_stopped_run_compares_alike(
    tmp_path: Path, problems: list
) -> None:
    solve = ScriptedSolve(problems)
    sweep = plan(problems[:3], settings=[{"bestofn_n": 1}, {"bestofn_n": 5}])
    await run_eval(sweep, backend=FakeBackend(), solve=solve, results=ResultsFile(tmp_path), concurrency=1)

    order = [(problem, method, getattr(config, "bestofn_n", None)) for method, problem, config in solve.calls]
    ids = [p.id for p in problems[:3]]
    per_problem = ["plain", "cepo", "cepo"]  # plain's setting is the same in both: it runs once
    assert [(p, m) for p, m, _ in order] == [(p, m) for p in ids for m in per_problem]
    assert [n for p, m, n in order if m == "cepo"] == [1, 5] * 3


async def test_progress_hears_of_each_group_with_work_already_done(tmp_path: Path, problems: list) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.begun: dict[str, tuple[int, int]] = {}
            self.advanced: list[str] = []

        def begin(self, group: str, total: int, done: list[Record]) -> None:
            self.begun[group] = (total, len(done))

        def advance(self, group: str, record: Record) -> None:
            self.advanced.append(group)

    limited = plan(problems[:3], settings=[{"bestofn_n": 2}])
    await run_eval(
        limited, backend=FakeBackend(), solve=ScriptedSolve(problems), results=ResultsFile(tmp_path)
    )
    progress = Recorder()
    await run_eval(
        plan(problems, settings=[{"bestofn_n": 2}]),
        backend=FakeBackend(),
        solve=ScriptedSolve(problems),
        results=ResultsFile(tmp_path),
        progress=progress,
    )
    assert progress.begun == {"plain": (6, 3), "cepo (bestofn_n=2)": (6, 3)}
    assert sorted(progress.advanced) == ["cepo (bestofn_n=2)"] * 3 + ["plain"] * 3


async def test_every_candidate_is_scored_as_if_chosen_each_answer_once(
    tmp_path: Path, problems: list
) -> None:
    problem = problems[0]
    wrong = f"The answer is {problem.count + 1}."

    def candidate(index: int, final: str, **fields: Any) -> Candidate:
        checks = fields.pop("checks", Checks(kind="number", answer=extract_answer(final, "number")))
        return Candidate(index=index, final=final, checks=checks, **fields)

    candidates = [
        candidate(0, wrong),
        # Its final reply dropped the answer; its program computed it, and the delivered answer states it.
        candidate(
            1, "I counted.", checks=Checks(kind="number", answer=str(problem.count), program_output="x")
        ),
        candidate(2, "", error="the server went away"),
        candidate(3, wrong),
    ]

    async def solve(method: str, backend: Any, messages: list[Message], **_: Any) -> MethodResult:
        return MethodResult(
            method=method,
            kind="number",
            answer=wrong,
            extracted=None,
            chosen=0,
            candidates=candidates,
            stages={},
            seconds=1.0,
        )

    class CountingLetters(Letters):
        def __init__(self) -> None:
            super().__init__()
            self.scored: list[str] = []

        async def score(self, problem: Problem, answer: str) -> Verdict:
            self.scored.append(answer)
            return await super().score(problem, answer)

    dataset = CountingLetters()
    only = EvalPlan(dataset=dataset, problems=[problem], methods=["cepo"])
    [record] = await run_eval(only, backend=FakeBackend(), solve=solve, results=ResultsFile(tmp_path))

    assert not record.passed
    assert record.candidates_passed == [False, True, False, False]  # the choice missed a right answer
    assert dataset.scored == [wrong, f"I counted.\n\nAnswer: {problem.count}"]
    assert lines(tmp_path)[0]["candidates_passed"] == [False, True, False, False]
