"""What kind of answer a question wants, and a model's answer reduced to a form that can be compared.

Short answers (numbers, choices, yes/no) are normalized so that "**Answer:** 3 r's", "three" and "3.0"
all count as the same vote.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Literal

TaskKind = Literal["code", "number", "choice", "yesno", "open"]
SHORT_KINDS: frozenset[TaskKind] = frozenset({"number", "choice", "yesno"})

_CODE_REQUEST = re.compile(
    r"\b(write|implement|complete|create|fix|define)\b[^.?!\n]{0,60}"
    r"\b(function|program|script|class|code|method|algorithm)\b"
    r"|```python|^\s*>>>|\bdef \w+\(",
    re.IGNORECASE | re.MULTILINE,
)
_CHOICE_LINE = re.compile(r"^\s*\(?([A-E])[).:]\s+\S", re.MULTILINE)
_YESNO_QUESTION = re.compile(
    r"^(is|are|was|were|do|does|did|can|could|will|would|should|has|have|had)\b|\byes or no\b", re.IGNORECASE
)
_NUMBER_QUESTION = re.compile(
    r"\bhow (many|much|old|long|far|often)\b|\b(calculate|compute|evaluate|solve)\b"
    r"|\bwhat is the (sum|product|difference|quotient|value|number|total|result|remainder|area)\b"
    r"|\d\s*[-+*/×÷^]\s*\d",
    re.IGNORECASE,
)

_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_ANSWER_MARKER = re.compile(r"answer\s*(?:is|:|=)\s*:?\s*(.*)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?")
# Step and list labels ("Step 2", "1." or "3)" opening a line of text) are not answers: read as ones,
# they made most letter-count passes. A line that is only "2." still states 2.
_STEP_LABEL = re.compile(
    r"\bstep\s+\d+(?:\.\d+)?|^[ \t]*(?:\d{1,2}[.):][ \t]+)+(?=\S)", re.IGNORECASE | re.MULTILINE
)
_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        [
            *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
            *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"),
            *("nineteen", "twenty"),
        ]
    )
} | {"once": 1, "twice": 2, "thrice": 3}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_CHOICE = re.compile(r"\(([A-E])\)|\b([A-E])\b(?=[).:]|\s*$)|\b(?:option|choice)\s+([A-E])\b")
_YESNO = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
_MARKUP = re.compile(r"[*_`$]+")


def classify(question: str, has_tests: bool = False) -> TaskKind:
    """Guess the kind of answer `question` asks for."""
    if has_tests or _CODE_REQUEST.search(question):
        return "code"
    letters = _CHOICE_LINE.findall(question)
    if len(set(letters)) >= 2 and "A" in letters:
        return "choice"
    if _YESNO_QUESTION.search(question.strip()):
        return "yesno"
    if _NUMBER_QUESTION.search(question):
        return "number"
    return "open"


def extract_answer(text: str, kind: TaskKind) -> str | None:
    """The normalized answer in `text`, or None when it holds none of the wanted kind."""
    if kind == "number":
        text = _STEP_LABEL.sub(" ", text)
        span = answer_span(text)
        return _number(span) or (_number(text) if span is not text else None)
    span = answer_span(text)
    if kind == "choice":
        return _choice(span) or (_choice(text) if span is not text else None)
    if kind == "yesno":
        found = _YESNO.search(span) or _YESNO.search(text)
        return None if found is None else ("yes" if found.group(1).lower() in ("yes", "true") else "no")
    normalized = " ".join(_MARKUP.sub("", span).lower().split()).strip(" .!")
    return normalized or None


def answer_span(text: str) -> str:
    """The part of `text` that states the answer: a \\boxed{} value, the rest of the last "Answer:" line,
    or (neither present) the whole text."""
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1]
    markers = _ANSWER_MARKER.findall(_MARKUP.sub("", text))
    stated = [m for m in markers if m.strip()]
    return stated[-1] if stated else text


def _number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    if found:
        return _canonical_number(found[-1])
    words = _NUMBER_WORD.findall(text)
    return str(_NUMBER_WORDS[words[-1].lower()]) if words else None


def _canonical_number(literal: str) -> str | None:
    try:
        value = Fraction(literal.replace(",", "").replace(" ", ""))
    except (ValueError, ZeroDivisionError):
        return None
    return str(value.numerator) if value.denominator == 1 else str(value)


def _choice(text: str) -> str | None:
    found = _CHOICE.findall(text)
    if not found:
        return None
    return next(letter for letter in found[-1] if letter)
