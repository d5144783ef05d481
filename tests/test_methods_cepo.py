"""The cepo method step by step, on a scripted backend: plans, executions, top-ups, fallback, selection."""

from __future__ import annotations

import re

import pytest
from scripted_backend import ScriptedBackend, last_message

from cepo.checks import extract_answer
from cepo.methods import prompts, solve
from cepo.methods.cepo_method import CODE_END
from cepo.methods.events import MethodResult

PLAN = re.escape(prompts.PLAN)
EXECUTE = re.escape(prompts.EXECUTE)
REFINE = re.escape(prompts.REFINE.split("{n}")[1])
FINAL = re.escape(prompts.FINAL)
RATE = re.escape(prompts.RATE)
COMPARE = re.escape(prompts.COMPARE)
APPROACHES = re.escape(prompts.APPROACHES.split("{n}")[1])

QUESTION = "How many r's are in the word strawberry?"
# The published CePO's counts: 3 plans (of at most 6) per candidate, rated.
PUBLISHED = {"planning_n": 3, "planning_m": 6, "rating_type": "absolute"}
# Its open loop: 3 candidates, nothing stops early.
FIXED = {
    **PUBLISHED,
    "stop_when": "never",
    "repair_rounds": 0,
    "max_candidates": 3,
}
SMALL = {
    **FIXED,
    "plan": {"max_tokens": 20},
    "execute": {"max_tokens": 20},
    "refine": {"max_tokens": 20},
    "final": {"max_tokens": 10},
    "rating": {"max_tokens": 10},
}
LONG = " ".join(["word"] * 60)  # cut by every budget in SMALL


def last_answer(prompt: str) -> str:
    return re.findall(r"Answer: (\d+)", prompt)[-1]


def echo_answer(prompt: str) -> str:
    return f"Checked. Answer: {last_answer(prompt)}"


def candidate_of(prompt: str) -> int:
    return int(re.findall(r"Plan of candidate (\d)", prompt)[-1])


def echo_code(prompt: str) -> str:
    return re.findall(r"```python\n.*?```", prompt, re.DOTALL)[-1]


def answers_by_candidate(answers: dict[int, str]) -> list[tuple[str, object]]:
    """Candidate c plans "Plan of candidate c." and reaches answers[c] through every later step."""
    plans = [f"1. Count the letters. (high) Plan of candidate {b // 3}." for b in range(9)]
    return [
        (PLAN, plans),
        (EXECUTE, lambda prompt: f"Done. Answer: {answers[candidate_of(prompt)]}"),
        (REFINE, echo_answer),
        (FINAL, echo_answer),
    ]


def assert_accounting(result: MethodResult, backend: ScriptedBackend) -> None:
    """Every generated token is booked once, as completion or wasted; every prompt once per request."""
    usage = result.usage
    assert usage.completion_tokens + usage.wasted_tokens == backend.produced_tokens
    assert usage.prompt_tokens == backend.prompt_tokens
    assert usage.requests == len(backend.calls)
    assert all(stage.completion_tokens >= 0 and stage.wasted_tokens >= 0 for stage in result.stages.values())


async def test_all_plans_start_in_one_request_and_each_step_uses_its_own_sampling() -> None:
    backend = ScriptedBackend(
        [
            (PLAN, "1. Spell the word. (high)\n2. Count the r letters. (medium)"),
            (EXECUTE, "s-t-r-a-w-b-e-r-r-y has three r. Answer: 3"),
            (REFINE, "They agree. Answer: 3"),
            (FINAL, "3"),
        ]
    )
    result = await solve("cepo", backend, QUESTION, SMALL)

    assert (result.extracted, result.answer, result.kind) == ("3", "3", "number")
    first = backend.calls[0]
    assert first.rule == PLAN and first.n == 9
    assert [len(backend.calls_to(rule)) for rule in (PLAN, EXECUTE, REFINE, FINAL)] == [1, 9, 3, 3]
    temperatures = {
        rule: {c.sampling.temperature for c in backend.calls_to(rule)} for rule in (PLAN, EXECUTE)
    }
    assert temperatures == {PLAN: {0.55}, EXECUTE: {0.25}}
    assert {c.sampling.temperature for c in backend.calls_to(REFINE)} == {0.1}
    assert {(c.sampling.temperature, c.sampling.max_tokens) for c in backend.calls_to(FINAL)} == {(0.0, 10)}
    # The execution continues the plan's conversation.
    execution_prompt = backend.calls_to(EXECUTE)[0].prompt
    assert [m["role"] for m in execution_prompt] == ["user", "assistant", "user"]
    assert execution_prompt[1]["content"].startswith("1. Spell the word.")
    for candidate in result.candidates:
        assert [a.status for a in candidate.attempts] == ["complete"] * 3
        assert candidate.refined == "They agree. Answer: 3"
    assert result.agreed and "rate" not in result.stages  # early agreement: no rating
    assert result.usage.wasted_tokens == 0
    assert_accounting(result, backend)


async def test_a_cut_plan_is_rejected_and_replaced() -> None:
    plans = [LONG] + [f"1. Count. (high) [p{i}]" for i in range(1, 10)]
    backend = ScriptedBackend([(PLAN, plans), (EXECUTE, "Answer: 3"), (REFINE, "Answer: 3"), (FINAL, "3")])
    result = await solve("cepo", backend, QUESTION, SMALL)

    first = result.candidates[0]
    assert [a.status for a in first.attempts] == ["rejected", "complete", "complete", "complete"]
    assert "plan cut" in first.attempts[0].reason
    assert [a.status for a in result.candidates[1].attempts] == ["complete"] * 3
    assert [c.n for c in backend.calls_to(PLAN)] == [9, 1]
    assert result.stages["plan"].wasted_tokens == 20
    assert_accounting(result, backend)


async def test_a_cut_execution_rejects_its_attempt_and_starts_another() -> None:
    plans = [f"1. Count. (high) [p{i}]" for i in range(10)]
    backend = ScriptedBackend(
        [
            (PLAN, plans),
            (EXECUTE, lambda prompt: LONG if "[p0]" in prompt else "Answer: 3"),
            (REFINE, "Answer: 3"),
            (FINAL, "3"),
        ]
    )
    result = await solve("cepo", backend, QUESTION, SMALL)

    attempts = result.candidates[0].attempts
    assert [a.status for a in attempts] == ["rejected", "complete", "complete", "complete"]
    assert "execution cut" in attempts[0].reason
    assert result.stages["execute"].wasted_tokens == 20
    assert result.stages["plan"].wasted_tokens == attempts[0].plan_tokens
    assert_accounting(result, backend)


async def test_when_no_plan_completes_the_model_answers_directly() -> None:
    backend = ScriptedBackend([(PLAN, LONG), (FINAL, "3"), ("strawberry", "There are 3. Answer: 3")])
    result = await solve("cepo", backend, QUESTION, SMALL)

    for candidate in result.candidates:
        assert candidate.fallback and candidate.refined is None
        assert [a.status for a in candidate.attempts] == ["rejected"] * 6  # planning_m attempts spent
    assert [c.n for c in backend.calls_to(PLAN)] == [9] + [1] * 9
    assert len(backend.calls_to("strawberry")) == 3
    assert backend.calls_to("strawberry")[0].prompt == [{"role": "user", "content": QUESTION}]
    assert result.stages["plan"].completion_tokens == 0
    assert result.stages["plan"].wasted_tokens == 18 * 20
    assert result.extracted == "3"
    assert_accounting(result, backend)


async def test_surplus_attempts_are_cancelled_once_enough_are_complete() -> None:
    slow = " ".join(["step"] * 200)  # within its budget, but far from done when the others are
    plans = ["1. Count. (high)", "1. Spell. (high)", slow] * 3
    backend = ScriptedBackend([(PLAN, plans), (EXECUTE, "Answer: 3"), (REFINE, "Answer: 3"), (FINAL, "3")])
    config = {**SMALL, "plan": {"max_tokens": 500}, "planning_n": 2, "planning_m": 4, "planning_spares": 1}
    result = await solve("cepo", backend, QUESTION, config)

    assert [c.n for c in backend.calls_to(PLAN)] == [9]
    cancelled = [b for b in backend.calls_to(PLAN)[0].branches if b.finish_reason == "cancelled"]
    assert len(cancelled) == 3
    for candidate in result.candidates:
        assert [a.status for a in candidate.attempts] == ["complete", "complete", "cancelled"]
    wasted = result.stages["plan"].wasted_tokens
    assert wasted == sum(b.tokens for b in cancelled) and 0 < wasted < 3 * 200
    assert_accounting(result, backend)


async def test_absolute_ratings_break_a_tie_between_different_answers() -> None:
    ratings = {"7": "Rating: 2", "8": "Rating: 9", "9": "Rating: 5"}
    backend = ScriptedBackend(
        [*answers_by_candidate({0: "7", 1: "8", 2: "9"}), (RATE, lambda p: ratings[last_answer(p)])]
    )
    result = await solve("cepo", backend, QUESTION, SMALL)

    assert (result.chosen, result.extracted) == (1, "8")
    assert [c.score.rating for c in result.candidates] == [2, 9, 5]
    assert len(backend.calls_to(RATE)) == 3 and not result.agreed
    assert_accounting(result, backend)


async def test_pairwise_ratings_count_wins_over_both_orders() -> None:
    def judge(prompt: str) -> str:
        first, second = prompt.split("Answer B:")
        return (
            "Better: A"
            if last_answer(first) == "9"
            else "Better: B"
            if last_answer(second) == "9"
            else "Better: A"
        )

    backend = ScriptedBackend([*answers_by_candidate({0: "7", 1: "8", 2: "9"}), (COMPARE, judge)])
    result = await solve("cepo", backend, QUESTION, {**SMALL, "rating_type": "pairwise"})

    assert (result.chosen, result.extracted) == (2, "9")
    assert len(backend.calls_to(COMPARE)) == 6
    assert [c.score.rating for c in result.candidates] == [1, 1, 4]
    assert_accounting(result, backend)


async def test_majority_votes_without_asking_the_model() -> None:
    backend = ScriptedBackend(answers_by_candidate({0: "7", 1: "8", 2: "8"}))
    result = await solve("cepo", backend, QUESTION, {**SMALL, "rating_type": "majority"})

    assert (result.chosen, result.extracted) == (1, "8")
    assert [c.score.votes for c in result.candidates] == [1, 2, 2]
    assert "rate" not in result.stages and not result.agreed


async def test_votes_come_before_ratings_and_a_tie_of_one_answer_needs_no_rating() -> None:
    backend = ScriptedBackend([*answers_by_candidate({0: "7", 1: "8", 2: "8"}), (RATE, "Rating: 10")])
    result = await solve("cepo", backend, QUESTION, SMALL)

    assert result.extracted == "8" and backend.calls_to(RATE) == []


async def test_execution_rating_takes_a_short_answer_from_the_candidates_own_program() -> None:
    program = "```python\nprint('strawberry'.count('r'))\n```"
    backend = ScriptedBackend(
        [(PLAN, "1. Count with code. (high)"), (EXECUTE, program), (REFINE, program), (FINAL, "2")]
    )
    result = await solve("cepo", backend, QUESTION, {**SMALL, "rating_type": "execution"})

    assert result.extracted == "3"
    assert result.candidates[0].checks.program_output == "3"
    assert "Python program" in backend.calls_to(EXECUTE)[0].last_message
    # The final reply said 2; the answer shown, and scored, is the one line the program computed.
    assert result.answer == "Answer: 3"
    assert extract_answer(result.answer, "number") == "3"


@pytest.mark.parametrize(
    ("final", "shown"), [("All done.", "Answer: 3"), ("", "Answer: 3"), ("It is 3.", "It is 3.")]
)
async def test_a_final_reply_that_drops_the_answer_is_shown_with_the_answer_an_earlier_step_stated(
    final: str, shown: str
) -> None:
    backend = ScriptedBackend(
        [(PLAN, "1. Count. (high)"), (EXECUTE, "Answer: 3"), (REFINE, "Answer: 3"), (FINAL, final)]
    )
    result = await solve("cepo", backend, QUESTION, SMALL)

    assert (result.extracted, result.answer) == ("3", shown)


CODE_QUESTION = "Write a Python function double(x) that returns twice x.\n\n>>> double(2)\n4\n"


@pytest.mark.parametrize("rating_type", ["absolute", "execution"])
async def test_code_candidates_are_ranked_by_the_examples_they_pass(rating_type: str) -> None:
    codes = {
        0: "```python\ndef double(x):\n    return x + 2\n```",  # passes the question's example only
        1: "```python\ndef double(x):\n    return 2 * x\n```",
        2: "```python\ndef double(x) return x\n```",
    }
    backend = ScriptedBackend(
        [
            (PLAN, [f"1. Multiply. (high) Plan of candidate {b // 3}." for b in range(9)]),
            (EXECUTE, lambda prompt: codes[candidate_of(prompt)]),
            (REFINE, echo_code),
            (FINAL, echo_code),
            (RATE, "Rating: 5"),
        ]
    )
    tests = ["assert double(5) == 10"]
    result = await solve("cepo", backend, CODE_QUESTION, {**SMALL, "rating_type": rating_type}, tests)

    assert result.kind == "code"
    assert result.chosen == 1 and "2 * x" in (result.extracted or "")
    scores = [(c.score.parses, c.score.examples_passed, c.score.examples_total) for c in result.candidates]
    assert scores == [(True, 1, 2), (True, 2, 2), (False, 0, 2)]
    assert backend.calls_to(RATE) == []  # a single best candidate: nothing to break


async def test_working_code_of_an_execution_outranks_a_final_answer_that_broke_it() -> None:
    working = "```python\ndef double(x):\n    return 2 * x\n```"
    backend = ScriptedBackend(
        [
            (PLAN, "1. Multiply. (high)"),
            (EXECUTE, working),
            (REFINE, "```python\ndef double(x):\n    return x - 1\n```"),
            (FINAL, "```python\ndef double(x):\n    return x\n```"),
        ]
    )
    result = await solve("cepo", backend, CODE_QUESTION, SMALL)

    assert [c.checks.source for c in result.candidates] == [2, 2, 2]  # the executions' code
    assert result.answer == working and all(c.score.examples_passed == 1 for c in result.candidates)


async def test_code_replies_stop_where_their_code_block_ends_and_the_answer_is_fenced() -> None:
    code = "```python\ndef double(x):\n    return 2 * x"  # the engine leaves out the fence it stopped at
    backend = ScriptedBackend([(PLAN, "1. Multiply. (high)"), (EXECUTE, code), (REFINE, code), (FINAL, code)])
    result = await solve("cepo", backend, CODE_QUESTION, SMALL)

    stops = {call.rule: call.sampling.stop for call in backend.calls}
    assert stops == {PLAN: ["```"], EXECUTE: [CODE_END], REFINE: [CODE_END], FINAL: [CODE_END]}
    assert result.answer == f"{code}\n```" and result.candidates[result.chosen].checks.source == 0


@pytest.mark.parametrize(
    ("question", "reply", "part", "asked_again"),
    [
        (QUESTION, "Answer: 3", QUESTION, True),
        (CODE_QUESTION, "```python\ndef double(x):\n    return 2 * x", "double", False),
    ],
)
async def test_the_final_step_asks_a_short_answers_question_again_but_not_a_code_question(
    question: str, reply: str, part: str, asked_again: bool
) -> None:
    backend = ScriptedBackend([(PLAN, "1. Count. (high)"), (EXECUTE, reply), (REFINE, reply), (FINAL, reply)])
    await solve("cepo", backend, question, SMALL)

    finals = [last_message(call.prompt) for call in backend.calls_to(FINAL)]
    assert finals and all((part in final) == asked_again for final in finals)


async def test_answers_of_other_kinds_do_not_stop_at_a_code_fence() -> None:
    backend = ScriptedBackend(answers_by_candidate({0: "3", 1: "3", 2: "3"}))
    await solve("cepo", backend, QUESTION, SMALL)

    assert all(CODE_END not in call.sampling.stop for call in backend.calls)


async def test_plan_diversity_gives_each_candidate_its_own_approach() -> None:
    backend = ScriptedBackend(
        [
            (APPROACHES, "1. Spell it out.\n2. Use a table.\n3. Count vowels first."),
            (PLAN, "1. Go. (high)"),
            (EXECUTE, "Answer: 3"),
            (REFINE, "Answer: 3"),
            (FINAL, "3"),
        ]
    )
    result = await solve("cepo", backend, QUESTION, {**SMALL, "plan_diversity": True})

    assert backend.calls[0].rule == APPROACHES
    assert [c.approach for c in result.candidates] == ["Spell it out.", "Use a table.", "Count vowels first."]
    plan_calls = backend.calls_to(PLAN)
    assert [c.n for c in plan_calls] == [3, 3, 3]
    for call, candidate in zip(plan_calls, result.candidates, strict=True):
        assert call.last_message.endswith(f"Use this approach: {candidate.approach}\n\n{QUESTION}")
    assert_accounting(result, backend)


async def test_code_candidates_are_checked_with_the_questions_imports() -> None:
    question = (
        "Complete this function.\n\n```python\nfrom typing import List\n\n\n"
        'def total(xs: List[int]) -> int:\n    """ Sum of xs.\n    >>> total([1, 2])\n    3\n    """\n```'
    )
    answer = "```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```"
    backend = ScriptedBackend([(PLAN, "1. Add. (high)"), (EXECUTE, answer), (REFINE, answer), (FINAL, "")])
    result = await solve("cepo", backend, question, SMALL)

    assert all((c.score.examples_passed, c.score.examples_total) == (1, 1) for c in result.candidates)


async def test_an_empty_plan_is_no_plan_and_its_execution_answers_the_question_directly() -> None:
    code = "```python\ndef double(x):\n    return 2 * x"
    # SmolLM2 starts its code at once when asked for a plan, and the plan stops at the fence: empty.
    backend = ScriptedBackend([(PLAN, ""), ("function double", code), (REFINE, code), (FINAL, code)])
    result = await solve("cepo", backend, CODE_QUESTION, SMALL)

    executions = backend.calls_to("function double")
    assert len(executions) == 9
    assert all(call.prompt == [{"role": "user", "content": CODE_QUESTION}] for call in executions)
    assert {call.sampling.temperature for call in executions} == {0.55}  # the plan's: attempts still differ
    assert all(not a.plan and a.execution == code for c in result.candidates for a in c.attempts)
    assert not any(c.fallback for c in result.candidates)
    assert result.answer == f"{code}\n```"
    assert_accounting(result, backend)


async def test_a_program_answer_asked_directly_is_asked_for_as_a_program() -> None:
    backend = ScriptedBackend(
        [(PLAN, ""), (FINAL, "4"), ("strawberry", "```python\nprint('strawberry'.count('r'))"), (REFINE, "4")]
    )
    result = await solve("cepo", backend, QUESTION, {**SMALL, "rating_type": "execution"})

    executions = backend.calls_to("strawberry")
    assert len(executions) == 9
    assert all("program" in call.last_message and call.last_message.endswith(QUESTION) for call in executions)
    assert result.extracted == "3"  # what the program printed
    assert result.answer == "Answer: 3"
