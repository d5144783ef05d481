"""The instructions the methods give the model: short and concrete, so that a 135M model can follow them.

Every step continues a conversation by appending messages, so the backend reuses the tokens it has
already seen (the question, a plan, a solution) instead of reading them again.
"""

from __future__ import annotations

from cepo.backends.base import Message
from cepo.checks import SHORT_KINDS, TaskKind

# How an answer of each kind should end, so that it can be found and compared.
_ANSWER_LINE: dict[TaskKind, str] = {
    "code": "Write the complete code in one ```python block.",
    "number": "End with the line: Answer: <number>",
    "choice": "End with the line: Answer: <letter>",
    "yesno": "End with the line: Answer: yes, or Answer: no",
    "open": "End with your answer.",
}
_FINAL_REPLY: dict[TaskKind, str] = {
    "code": "Reply with only the final code, in one ```python block.",
    "number": "Reply with only the final number.",
    "choice": "Reply with only the letter of the right choice.",
    "yesno": "Reply with only yes or no.",
    "open": "Reply with only the final answer, in the form the question asks for.",
}
_PROGRAM = "Write a short Python program that computes the answer and prints it, in one ```python block."

PLAN = (
    "Write a plan of at most 3 short steps to solve the task below. Do not solve it yet. "
    "After each step, write your confidence: high, medium or low."
)
EXECUTE = "Now carry out your plan step by step, briefly. Take extra care with the low-confidence steps."
REFINE = (
    "Above are {n} solutions. List where they disagree and decide which is right. "
    "Then write one corrected step-by-step solution."
)
FINAL = "Now give the final answer to the question."
REPAIR = "Fix it."
_REPAIR_REPLY = "Write the complete corrected code in one ```python block."
APPROACHES = (
    "Give {n} different ways to solve the task below, one per line, numbered 1 to {n}. "
    "One short sentence each. Do not solve it."
)
RATE = (
    "Check the answer above: redo its key steps and look for mistakes. "
    "Then rate it from 0 (wrong) to 10 (surely right). End with the line: Rating: <number>"
)
COMPARE = (
    "Above are two answers, A and B. Which one answers the question correctly? "
    "Explain in one or two sentences, then end with the line: Better: A, or Better: B"
)


def with_question(messages: list[Message], instruction: str) -> list[Message]:
    """The conversation with `instruction` put before the user's question. Instruction first, because then
    every question's prompt starts with the same tokens: the engine reuses their cells instead of reading
    them again, and the first plan token of a new question comes after a prefill of the question alone."""
    question = messages[-1]
    return [*messages[:-1], {"role": question["role"], "content": f"{instruction}\n\n{question['content']}"}]


def continued(messages: list[Message], reply: str, instruction: str) -> list[Message]:
    """The conversation continued with the model's `reply` and the next `instruction`."""
    return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": instruction}]


def direct(messages: list[Message], program: bool) -> list[Message]:
    """The question asked straight, as the plain method asks it; `program`: for a program that prints the
    answer, which the checks will run."""
    return with_question(messages, _PROGRAM) if program else messages


def plan_instruction(approach: str | None) -> str:
    return PLAN if approach is None else f"{PLAN}\nUse this approach: {approach}"


def execute_instruction(kind: TaskKind, program: bool) -> str:
    """`program`: a short answer is to be computed by a program the checks will run."""
    return f"{EXECUTE}\n{_PROGRAM if program else _ANSWER_LINE[kind]}"


def refine_instruction(n: int, kind: TaskKind, program: bool) -> str:
    return f"{REFINE.format(n=n)}\n{_PROGRAM if program else _ANSWER_LINE[kind]}"


def final_instruction(kind: TaskKind, question: str) -> str:
    """A short answer's question is asked again: after its plan and execution a small model often no
    longer answers it ("I'm ready to help. What's the task?")."""
    if kind in SHORT_KINDS:
        return f"{FINAL}\nQuestion: {question}\n{_FINAL_REPLY[kind]}"
    return f"{FINAL} {_FINAL_REPLY[kind]}"


def repair_instruction(failure: str, program: bool) -> str:
    """A repair turn: what failed, then what to write instead (code, or a program for a short answer)."""
    return f"{failure}\n{REPAIR} {_PROGRAM if program else _REPAIR_REPLY}"


def numbered(label: str, texts: list[str]) -> str:
    return "\n\n".join(f"{label} {i}:\n{text.strip()}" for i, text in enumerate(texts, start=1))
