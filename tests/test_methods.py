"""The methods' entry point on a scripted backend: baselines, the event stream, errors, cancellation."""

from __future__ import annotations

import re

import pytest
from scripted_backend import ScriptedBackend
from test_methods_cepo import EXECUTE, FINAL, PLAN, RATE, REFINE, SMALL, assert_accounting

from cepo.errors import CepoError, GenerationError
from cepo.methods import METHODS, run, solve
from cepo.methods.context import _covered
from cepo.methods.events import (
    BranchEnded,
    BranchToken,
    CandidateScored,
    EventAdapter,
    Finished,
    StageEnded,
    StageStarted,
)
from cepo.methods.settings import ConfigError

QUESTION = "What is 6 * 7?"


def test_the_four_methods_are_offered() -> None:
    assert list(METHODS) == ["plain", "self-consistency", "best-of-n", "cepo"]


async def test_plain_is_one_completion_of_the_conversation() -> None:
    backend = ScriptedBackend([("6 \\* 7", "6 * 7 = 42. Answer: 42")])
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTION},
    ]
    result = await solve("plain", backend, conversation, {"sample": {"temperature": 0.0, "max_tokens": 30}})

    assert [(c.prompt, c.n) for c in backend.calls] == [(conversation, 1)]
    assert (result.answer, result.extracted, result.kind) == ("6 * 7 = 42. Answer: 42", "42", "number")
    assert backend.calls[0].sampling.max_tokens == 30
    assert_accounting(result, backend)


async def test_self_consistency_takes_the_majority_of_normalized_answers() -> None:
    replies = ["Answer: 41", "It is **42**.", "Answer: 42.0", "forty-two, so Answer: 43", "Answer: 42"]
    backend = ScriptedBackend([("6 \\* 7", replies)])
    result = await solve("self-consistency", backend, QUESTION, {"k": 5})

    assert [(c.n, c.rule) for c in backend.calls] == [(5, "6 \\* 7")]  # one request, one prefill
    assert result.extracted == "42" and result.chosen == 1
    assert [c.score.votes for c in result.candidates] == [1, 3, 3, 1, 3]
    assert not result.agreed and "rate" not in result.stages
    assert_accounting(result, backend)


async def test_best_of_n_lets_the_model_rate_every_sample() -> None:
    ratings = {"41": "Rating: 3", "42": "Rating: 8", "40": "Rating: 1"}
    backend = ScriptedBackend(
        [
            (RATE, lambda prompt: ratings[re.findall(r"Answer: (\d+)", prompt)[-1]]),
            ("6 \\* 7", ["Answer: 41", "Answer: 42", "Answer: 40"]),
        ]
    )
    result = await solve("best-of-n", backend, QUESTION, {"k": 3})

    assert len(backend.calls_to(RATE)) == 3
    assert (result.chosen, result.extracted) == (1, "42")
    assert [c.score.rating for c in result.candidates] == [3, 8, 1]
    assert_accounting(result, backend)


def cepo_script() -> list[tuple[str, object]]:
    return [(PLAN, "1. Multiply. (high)"), (EXECUTE, "Answer: 42"), (REFINE, "Answer: 42"), (FINAL, "42")]


async def test_the_event_stream_tells_the_whole_run_and_ends_with_the_result() -> None:
    backend = ScriptedBackend(cepo_script())
    events = [event async for event in run("cepo", backend, QUESTION, SMALL)]

    assert isinstance(events[0], StageStarted) and events[0].stage == "plan"
    assert isinstance(events[-1], Finished)
    result = events[-1].result
    assert [e.candidate for e in events if isinstance(e, CandidateScored)] == [0, 1, 2]
    # The tokens of each branch add up to its text, and every branch's end is told.
    plan_text = "".join(
        e.text
        for e in events
        if isinstance(e, BranchToken) and (e.stage, e.candidate, e.branch) == ("plan", 2, 1)
    )
    assert plan_text == result.candidates[2].attempts[1].plan
    ended = [e for e in events if isinstance(e, BranchEnded)]
    assert sum(e.tokens for e in ended) == backend.produced_tokens
    started = {(e.stage, e.candidate) for e in events if isinstance(e, StageStarted)}
    assert started == {(e.stage, e.candidate) for e in events if isinstance(e, StageEnded)}
    assert {("plan", 0), ("execute", 0), ("refine", 0), ("final", 0), ("check", 0)} <= started
    for event in events:  # the wire format reads back as the same event
        assert EventAdapter.validate_json(event.model_dump_json()) == event


async def test_leaving_the_stream_early_cancels_what_is_still_generating() -> None:
    backend = ScriptedBackend([(PLAN, " ".join(["step"] * 100))])
    async for event in run("cepo", backend, QUESTION, {"plan": {"max_tokens": 200}}):
        if isinstance(event, BranchToken):
            break
    await backend.idle()

    [plans] = backend.calls
    assert {branch.finish_reason for branch in plans.branches} == {"cancelled"}
    assert all(branch.tokens < 100 for branch in plans.branches)


async def test_a_backend_failure_ends_the_run_with_that_error() -> None:
    backend = ScriptedBackend([(PLAN, "1. Multiply. (high)"), (EXECUTE, GenerationError("context full"))])
    with pytest.raises(GenerationError, match="context full"):
        await solve("cepo", backend, QUESTION, SMALL)
    await backend.idle()
    assert all(len(call.branches) == call.n for call in backend.calls if call.rule != EXECUTE)


@pytest.mark.parametrize(
    ("method", "messages", "config", "tests", "message"),
    [
        ("tree-of-thought", QUESTION, None, None, "unknown method 'tree-of-thought'"),
        ("plain", [], None, None, "no messages"),
        ("plain", [{"role": "assistant", "content": "Hi"}], None, None, "must end with the user's question"),
        ("plain", [{"role": "robot", "content": "Hi"}], None, None, "not a chat message"),
        ("plain", "  ", None, None, "the question is empty"),
        ("cepo", QUESTION, {"planning_n": 0}, None, "planning_n"),
        ("cepo", QUESTION, None, ["double(2) == 4"], "must be an assert statement"),
    ],
)
async def test_a_bad_request_is_refused_with_a_clear_error(
    method: str, messages: object, config: dict[str, object] | None, tests: list[str] | None, message: str
) -> None:
    backend = ScriptedBackend([])
    with pytest.raises(CepoError, match=re.escape(message)):
        await solve(method, backend, messages, config, tests)  # type: ignore[arg-type]
    assert backend.calls == []


async def test_a_bad_setting_names_its_field() -> None:
    with pytest.raises(ConfigError, match=r"plan\.temperature"):
        await solve("cepo", ScriptedBackend([]), QUESTION, {"plan": {"temperature": -1}})


def test_a_stage_is_timed_by_the_wall_time_its_work_covers() -> None:
    # Overlapping requests count once; a gap between them does not count.
    assert _covered([(5.0, 6.0), (0.0, 2.0), (1.0, 3.0), (1.5, 2.5)]) == 4.0
