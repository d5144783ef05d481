"""A method run whose backend fails some requests: one candidate's failure leaves the others to answer,
and the result says which failed; when every candidate fails, so does the run."""

from __future__ import annotations

import re

import pytest
from rich.console import Console
from scripted_backend import Reply, ScriptedBackend, prompt_text
from test_methods_cepo import (
    APPROACHES,
    COMPARE,
    EXECUTE,
    FINAL,
    PLAN,
    QUESTION,
    RATE,
    REFINE,
    SMALL,
    answers_by_candidate,
    echo_answer,
)

from cepo.backends.base import GenerationStream, Prompt, Sampling, TokenEvent
from cepo.cli.live import LiveView
from cepo.errors import BackendTimeout, BackendUnavailable, CepoError, GenerationError
from cepo.methods import METHODS, run, solve
from cepo.methods.events import (
    CandidateFailed,
    CandidateScored,
    Finished,
    StageEnded,
    StageStarted,
)

pytestmark = pytest.mark.timeout(30)

ANSWERS = {0: "3", 1: "4", 2: "3"}
LOST = BackendUnavailable("http://upstream/v1 dropped the connection mid-answer")


class FailingBackend(ScriptedBackend):
    """A ScriptedBackend that fails every request whose whole prompt matches `failing`: each of its
    branches streams a word, then the request ends with `error`."""

    def __init__(self, rules: list[tuple[str, Reply]], failing: str, error: CepoError) -> None:
        super().__init__(rules)
        self.failing, self.error = failing, error
        self.failed: list[Prompt] = []

    def stream(self, prompt: Prompt, n: int = 1, sampling: Sampling | None = None) -> GenerationStream:
        if not re.search(self.failing, prompt_text(prompt)):
            return super().stream(prompt, n, sampling)
        self.failed.append(prompt)
        stream = GenerationStream(n, lambda branch: None)
        stream.push([TokenEvent(branch, "Partial") for branch in range(n)])
        stream.end(self.error)
        return stream


@pytest.mark.parametrize(
    "failing",
    [
        rf"Plan of candidate 1[\s\S]*{EXECUTE}",
        rf"Answer: 4[\s\S]*{REFINE}",
        rf"Answer: 4[\s\S]*{FINAL}",
    ],
    ids=["execute", "refine", "final"],
)
async def test_a_failed_candidate_leaves_the_others_to_answer(failing: str) -> None:
    backend = FailingBackend(answers_by_candidate(ANSWERS), failing, LOST)
    events = [event async for event in run("cepo", backend, QUESTION, SMALL)]
    assert isinstance(events[-1], Finished)
    result = events[-1].result

    assert backend.failed
    assert result.failed == [1]
    failed = result.candidates[1]
    assert failed.error == str(LOST)
    assert failed.final == ""
    assert {attempt.status for attempt in failed.attempts} <= {"cancelled"}
    assert {attempt.reason for attempt in failed.attempts} <= {"its candidate failed"}
    assert [c.error for c in result.candidates] == [None, str(LOST), None]
    assert result.chosen in (0, 2)
    assert (result.answer, result.extracted) == ("Checked. Answer: 3", "3")
    assert result.candidates[0].score.votes == 2  # the failed candidate's vote does not count
    # Its events: a failure, no score; every stage it began has ended.
    assert [e.candidate for e in events if isinstance(e, CandidateFailed)] == [1]
    assert [e.candidate for e in events if isinstance(e, CandidateScored)] == [0, 2]
    started = [(e.stage, e.candidate) for e in events if isinstance(e, StageStarted)]
    ended = [(e.stage, e.candidate) for e in events if isinstance(e, StageEnded)]
    assert sorted(started, key=str) == sorted(ended, key=str)
    # Every token generated is booked once, as completion or wasted.
    usage = result.usage
    assert usage.completion_tokens + usage.wasted_tokens == backend.produced_tokens
    await backend.idle()


async def test_a_failed_plan_request_of_one_approach_fails_only_its_candidate() -> None:
    rules: list[tuple[str, Reply]] = [
        (APPROACHES, "1. Spell it out.\n2. Use a table.\n3. Count vowels first."),
        (PLAN, "1. Count. (high)"),
        (EXECUTE, "Done. Answer: 3"),
        (REFINE, echo_answer),
        (FINAL, echo_answer),
    ]
    backend = FailingBackend(rules, "Use this approach: Use a table", BackendTimeout("silent for 2 s"))
    result = await solve("cepo", backend, QUESTION, {**SMALL, "plan_diversity": True})

    assert result.failed == [1]
    assert result.candidates[1].error == "silent for 2 s"
    assert result.candidates[1].approach == "Use a table."
    assert result.candidates[1].attempts == []
    assert result.extracted == "3"


@pytest.mark.parametrize(
    ("failing", "error"),
    [
        (EXECUTE, GenerationError("context full")),
        (PLAN, BackendTimeout("http://upstream/v1 did not answer within 2 s")),
        (FINAL, LOST),
    ],
    ids=["execute", "plan", "final"],
)
async def test_when_every_candidate_fails_the_run_fails_with_the_error(
    failing: str, error: CepoError
) -> None:
    backend = FailingBackend(answers_by_candidate(ANSWERS), failing, error)
    with pytest.raises(type(error), match=re.escape(str(error))):
        await solve("cepo", backend, QUESTION, SMALL)
    await backend.idle()  # nothing is left generating
    assert all(len(call.branches) == call.n for call in backend.calls)


@pytest.mark.parametrize("method", ["self-consistency", "best-of-n", "plain"])
async def test_samples_come_from_one_request_so_its_failure_fails_the_run(method: str) -> None:
    backend = FailingBackend([], "", LOST)
    with pytest.raises(BackendUnavailable, match="dropped the connection"):
        await solve(method, backend, QUESTION, {"k": 3})


async def test_the_live_view_shows_a_failed_candidate_and_why() -> None:
    backend = FailingBackend(answers_by_candidate(ANSWERS), rf"Answer: 4[\s\S]*{REFINE}", LOST)
    view = LiveView(QUESTION, METHODS["cepo"])
    async for event in run("cepo", backend, QUESTION, SMALL):
        view.update(event)
    console = Console(width=200, record=True)
    console.print(view)
    shown = console.export_text()

    assert view.candidates[1].error == str(LOST)
    assert "failed: http://upstream/v1 dropped the connection" in shown
    assert view.candidates[0].error is None and view.candidates[0].score is not None


async def test_a_failed_rating_request_leaves_its_candidate_unrated_and_the_run_goes_on() -> None:
    rules = [*answers_by_candidate({0: "3", 1: "4", 2: "5"}), (RATE, "Looks right. Rating: 6")]
    backend = FailingBackend(rules, rf"Answer: 4[\s\S]*{RATE}", LOST)
    result = await solve("cepo", backend, QUESTION, SMALL)

    scores = [c.score for c in result.candidates]
    assert [s.rating for s in scores] == [6.0, None, 6.0]
    assert [s.rating_error for s in scores] == [None, str(LOST), None]
    assert result.failed == [] and result.chosen == 0 and result.extracted == "3"
    await backend.idle()


@pytest.mark.parametrize("rating_type", ["absolute", "pairwise"])
async def test_when_every_rating_fails_best_of_n_still_answers(rating_type: str) -> None:
    backend = FailingBackend([(r".", "Answer: 3")], f"{RATE}|{COMPARE}", LOST)
    result = await solve("best-of-n", backend, QUESTION, {**SMALL, "k": 3, "rating_type": rating_type})

    assert result.chosen == 0 and result.extracted == "3"
    assert all(c.score.rating_error == str(LOST) for c in result.candidates)
    await backend.idle()
