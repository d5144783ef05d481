"""cepo end to end on the real SmolLM2-135M model through the embedded engine, with small token budgets.

A 135M model is rarely right, so these tests check what must hold whatever it writes: the run's shape,
its checks, and token accounting that adds up against every branch it reports.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from cepo.backends.base import Backend, GenerationStream, Prompt, Sampling
from cepo.backends.llama import LlamaEngine
from cepo.methods import prompts, run
from cepo.methods.events import BranchEnded, Event, Finished, MethodResult, StageStarted

pytestmark = pytest.mark.model

SMALL: dict[str, Any] = {
    # The open loop: every candidate runs to its end (the closed loop has its own test below).
    "stop_when": "never",
    "repair_rounds": 0,
    "max_candidates": 2,
    "bestofn_n": 2,
    "planning_n": 2,
    "planning_m": 3,
    "plan": {"max_tokens": 48},
    "execute": {"max_tokens": 96},
    "refine": {"max_tokens": 96},
    "final": {"max_tokens": 64},
    "sample": {"max_tokens": 64},
    "rating": {"max_tokens": 32},
    "seed": 7,
}


class Recording(Backend):
    """The engine, keeping every prompt it is sent."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.model, self.prompts = inner, inner.model, []

    def stream(self, prompt: Prompt, n: int = 1, sampling: Sampling | None = None) -> GenerationStream:
        self.prompts.append(prompt)
        return self.inner.stream(prompt, n, sampling)


async def run_cepo(engine: Backend, question: str, **overrides: Any) -> tuple[list[Event], MethodResult]:
    events = [event async for event in run("cepo", engine, question, {**SMALL, **overrides})]
    assert isinstance(events[-1], Finished)
    return events, events[-1].result


def assert_accounts_for_every_branch(events: list[Event], result: MethodResult) -> None:
    ended = [e for e in events if isinstance(e, BranchEnded)]
    assert sum(e.tokens for e in ended) == result.usage.completion_tokens + result.usage.wasted_tokens
    for stage, usage in result.stages.items():
        assert (
            sum(e.tokens for e in ended if e.stage == stage) == usage.completion_tokens + usage.wasted_tokens
        )
    attempts = [a for c in result.candidates for a in c.attempts]
    plans = result.stages["plan"]
    assert sum(a.plan_tokens for a in attempts) == plans.completion_tokens + plans.wasted_tokens
    dropped = [a for a in attempts if a.status != "complete"]
    assert plans.wasted_tokens == sum(a.plan_tokens for a in dropped)


async def test_a_code_question_runs_through_cepo_and_its_example(engine: LlamaEngine) -> None:
    question = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n"
    events, result = await run_cepo(engine, question)

    # SmolLM2 often starts a code answer at once, so its plan may end empty at the code fence.
    first = next(e for e in events if isinstance(e, StageStarted))
    assert (first.stage, result.kind) == ("plan", "code")
    assert not any("```" in a.plan for c in result.candidates for a in c.attempts)
    assert len(result.candidates) == 2
    for candidate in result.candidates:
        assert 2 <= len(candidate.attempts) <= 3
        assert len(candidate.checks.examples) == 1  # the doctest, run in the sandbox
        assert candidate.score.examples_total == 1
    best = max(c.score.key() for c in result.candidates)
    assert result.candidates[result.chosen].score.key() == best
    assert_accounts_for_every_branch(events, result)


async def test_examples_written_in_the_question_s_prose_are_run(engine: LlamaEngine) -> None:
    question = (
        "Write a Python function is_even(n) that returns True when n is even. "
        "For example, is_even(4) returns True, and is_even(7) ➞ False."
    )
    events, result = await run_cepo(engine, question, bestofn_n=1, max_candidates=1, planning_n=1)

    [candidate] = result.candidates
    ran = [(r.example.input, r.example.output) for r in candidate.checks.examples]
    assert ran == [("is_even(4)", "True"), ("is_even(7)", "False")]
    assert candidate.score.examples_total == 2
    assert_accounts_for_every_branch(events, result)


async def test_a_letter_count_question_runs_through_cepo_with_execution(engine: LlamaEngine) -> None:
    question = 'How many times does the letter "r" appear in the word "strawberry"?'
    events, result = await run_cepo(engine, question, rating_type="execution")

    assert result.kind == "number"
    assert "rate" not in result.stages  # execution: the checks decide, not the model
    for candidate in result.candidates:  # a normalized number, or no number at all
        assert candidate.checks.answer is None or re.fullmatch(r"-?\d+(/\d+)?", candidate.checks.answer)
    assert result.extracted == result.candidates[result.chosen].checks.answer
    assert_accounts_for_every_branch(events, result)


async def test_a_code_answer_that_fails_its_example_goes_through_a_repair_round(engine: LlamaEngine) -> None:
    # No code can guess this value from the question: the first answer fails its example.
    question = (
        "Write a Python function score(word) that returns the score of a word.\n\n>>> score('cat')\n48213\n"
    )
    recording = Recording(engine)
    events, result = await run_cepo(
        recording,
        question,
        bestofn_n=1,
        max_candidates=1,
        planning_n=1,
        repair_rounds=1,
        stop_when="verified",
    )

    [candidate] = result.candidates
    [round] = candidate.repairs
    [repair_prompt] = [p for p in recording.prompts if prompts.REPAIR in p[-1]["content"]]
    assert "score('cat') should return 48213, but it" in repair_prompt[-1]["content"]
    assert repair_prompt[-1]["content"].startswith(round.failure)
    repair_starts = [e for e in events if isinstance(e, StageStarted) and e.stage == "repair"]
    assert len(repair_starts) == 1 and result.stages["repair"].requests == 1
    assert result.stages["repair"].completion_tokens + result.stages["repair"].wasted_tokens == round.tokens
    assert_accounts_for_every_branch(events, result)
