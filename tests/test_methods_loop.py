"""cepo's closed loop on a scripted backend: failed checks feed repair turns, a verified or agreed answer
ends the run (the other branches cancelled, their tokens wasted), and more candidates start only while
nothing is settled."""

from __future__ import annotations

import re

from scripted_backend import Held, ScriptedBackend
from test_methods_cepo import (
    CODE_QUESTION,
    EXECUTE,
    FINAL,
    PLAN,
    QUESTION,
    REFINE,
    SMALL,
    answers_by_candidate,
    assert_accounting,
    candidate_of,
    echo_code,
)

from cepo.methods import prompts, run, solve
from cepo.methods.events import RunStopped

REPAIR = re.escape(prompts.REPAIR)
WRONG = "```python\ndef double(x):\n    return x + 3\n```"
RIGHT = "```python\ndef double(x):\n    return 2 * x\n```"
CODE = [(PLAN, "1. Multiply. (high)"), (EXECUTE, WRONG), (REFINE, echo_code), (FINAL, echo_code)]
ONE = {**SMALL, "bestofn_n": 1, "max_candidates": 1, "repair_rounds": 2}  # one candidate, its own rounds


def by_candidate(answers: dict[int, str]) -> list[tuple[str, object]]:
    """As answers_by_candidate, for up to 10 candidates."""
    plans = [f"1. Count the letters. (high) Plan of candidate {b // 3}." for b in range(30)]
    return [(PLAN, plans), *answers_by_candidate(answers)[1:]]


async def test_a_failed_example_is_shown_in_the_repair_prompt_and_the_fixed_code_ends_the_rounds() -> None:
    backend = ScriptedBackend([(REPAIR, RIGHT), *CODE])
    result = await solve("cepo", backend, CODE_QUESTION, {**ONE, "repair_rounds": 3})

    [turn] = backend.calls_to(REPAIR)  # it passed after one round: no second one
    shown = turn.last_message
    assert "double(2) should return 4, but it returned 5" in shown and "```python" in shown
    # The turn continues the candidate's own conversation: its final answer is the message before.
    assert turn.prompt[-2] == {"role": "assistant", "content": WRONG}
    [candidate] = result.candidates
    assert [(r.index, r.passed) for r in candidate.repairs] == [(0, True)]
    assert "2 * x" in (result.extracted or "") and result.answer == RIGHT
    assert result.stages["repair"].completion_tokens == candidate.repairs[0].tokens > 0
    assert_accounting(result, backend)


async def test_repair_stops_when_its_rounds_are_spent_and_each_round_shows_the_new_failure() -> None:
    still_wrong = [WRONG.replace("3", "1"), WRONG.replace("3", "7")]
    backend = ScriptedBackend([(REPAIR, still_wrong), *CODE])
    result = await solve("cepo", backend, CODE_QUESTION, {**ONE, "repair_rounds": 2})

    turns = backend.calls_to(REPAIR)
    assert [t.last_message.splitlines()[1] for t in turns] == [
        "- double(2) should return 4, but it returned 5",
        "- double(2) should return 4, but it returned 3",  # what the first repair's code returned
    ]
    assert [r.passed for r in result.candidates[0].repairs] == [False, False]
    assert_accounting(result, backend)


async def test_a_program_that_raises_is_repaired_with_its_error() -> None:
    broken = "```python\nprint('strawberry'.count(r))\n```"
    fixed = "```python\nprint('strawberry'.count('r'))\n```"
    backend = ScriptedBackend(
        [(REPAIR, fixed), (PLAN, "1. Count with code. (high)"), (EXECUTE, broken), (REFINE, broken)]
    )
    result = await solve("cepo", backend, QUESTION, {**ONE, "rating_type": "execution"})

    [turn] = backend.calls_to(REPAIR)
    assert "Your program failed: NameError: name 'r' is not defined" in turn.last_message
    assert (result.extracted, result.answer) == ("3", "Answer: 3")


async def test_a_verified_candidate_ends_the_run_and_the_others_tokens_are_wasted() -> None:
    # Candidate 0's code passes the example at once; candidates 1 and 2 are still writing theirs.
    slow = Held("```python\n" + "# thinking\n" * 20)
    backend = ScriptedBackend(
        [
            (PLAN, [f"1. Multiply. (high) Plan of candidate {b // 3}." for b in range(9)]),
            (EXECUTE, lambda prompt: RIGHT if candidate_of(prompt) == 0 else slow),
            (REFINE, echo_code),
            (FINAL, echo_code),
        ]
    )
    config = {**SMALL, "stop_when": "verified", "execute": {"max_tokens": 400}}
    events = []
    async for event in run("cepo", backend, CODE_QUESTION, config):
        events.append(event)
    result = events[-1].result  # type: ignore[union-attr]

    assert [e.reason for e in events if isinstance(e, RunStopped)] == ["candidate 1 passed every example"]
    assert result.chosen == 0 and result.stopped == "candidate 1 passed every example"
    assert [c.stopped for c in result.candidates] == [False, True, True]
    # Every branch of the stopped candidates ended cancelled, before its 400-token budget.
    others = [b for call in backend.calls for b in call.branches if b.tokens and call.rule == EXECUTE]
    assert any(b.finish_reason == "cancelled" and b.tokens < 400 for b in others)
    kept = {stage: u.completion_tokens for stage, u in result.stages.items()}
    wasted = sum(u.wasted_tokens for u in result.stages.values())
    winner = sum(
        a.plan_tokens + a.execution_tokens for a in result.candidates[0].attempts if a.status == "complete"
    )
    assert wasted > 0 and sum(kept.values()) >= winner
    assert_accounting(result, backend)


async def test_agreement_stops_the_run_once_agree_n_candidates_share_an_answer() -> None:
    backend = ScriptedBackend(answers_by_candidate({0: "3", 1: "3", 2: "4"}))
    result = await solve("cepo", backend, QUESTION, {**SMALL, "stop_when": "agreed", "agree_n": 2})

    assert result.extracted == "3" and result.stopped is not None and "agreed on '3'" in result.stopped
    assert_accounting(result, backend)


async def test_more_candidates_start_only_while_nothing_is_settled_up_to_max_candidates() -> None:
    # Every candidate answers differently: nothing agrees, so waves go on until max_candidates.
    backend = ScriptedBackend(by_candidate({i: str(i) for i in range(9)}))
    result = await solve(
        "cepo", backend, QUESTION, {**SMALL, "stop_when": "agreed", "bestofn_n": 2, "max_candidates": 5}
    )
    assert [c.index for c in result.candidates] == [0, 1, 2, 3, 4]
    assert [call.n for call in backend.calls_to(PLAN)] == [6, 6, 3]  # waves of 2, 2, then the last 1
    assert result.stopped is None
    assert_accounting(result, backend)

    # Two candidates that agree at once: no second wave.
    agreeing = ScriptedBackend(by_candidate({i: "3" for i in range(9)}))
    settled = await solve(
        "cepo", agreeing, QUESTION, {**SMALL, "stop_when": "agreed", "bestofn_n": 2, "max_candidates": 5}
    )
    assert len(settled.candidates) == 2 and len(agreeing.calls_to(PLAN)) == 1


async def test_a_short_answer_is_one_line_and_a_repeating_reply_is_cut() -> None:
    repeating = "The answer is 3. The answer is 3. The answer is 3."
    backend = ScriptedBackend(
        [(PLAN, "1. Count. (high)"), (EXECUTE, "Answer: 3"), (REFINE, "Answer: 3"), (FINAL, repeating)]
    )
    result = await solve("cepo", backend, QUESTION, ONE)
    assert result.answer == "The answer is 3."
    final = backend.calls_to(FINAL)[0]
    assert "\n" in final.sampling.stop  # a short answer's final reply ends with its line


async def test_a_program_that_prints_nothing_is_repaired_and_its_stated_answer_is_not_computed() -> None:
    silent = "```python\nx = 'strawberry'.count('r')\n```\nAnswer: 3"
    backend = ScriptedBackend(
        [(REPAIR, "```python\nprint(4)\n```"), (PLAN, "1. Count with code. (high)"), (EXECUTE, silent)]
    )
    result = await solve("cepo", backend, QUESTION, {**ONE, "rating_type": "execution", "repair_rounds": 1})

    [turn] = backend.calls_to(REPAIR)
    assert turn.last_message.startswith("Your program printed nothing.")
    [candidate] = result.candidates
    assert candidate.checks.computed and result.extracted == "4"  # the repaired program's answer
