"""One choice of a chat completion: a method run's events turned into reasoning text, answer and usage.

Most methods choose their answer only at the end, so everything they generate streams as reasoning and the
answer goes out as content once chosen. A method whose answer is live (plain: its single branch is the
answer itself) streams its tokens as content as they come. cepo's own event stream (/v1/cepo/runs) gets
the run's events themselves, as `Step`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cepo.methods.events import BranchEnded, BranchToken, Event, Finished, MethodResult
from cepo.methods.method import Method
from cepo.server.schemas import FinishReason, Usage
from cepo.server.transcript import Transcript

TextField = Literal["reasoning", "content"]


@dataclass(frozen=True)
class Text:
    choice: int
    field: TextField
    text: str


@dataclass(frozen=True)
class Step:
    """One event of the method run, as it is: what cepo's own event stream sends."""

    choice: int
    event: Event


@dataclass(frozen=True)
class Ended:
    choice: int
    finish_reason: FinishReason
    usage: Usage


Output = Text | Step | Ended


def shows_text(output: Output) -> bool:
    """Whether `output` carries generated text: the backend has taken the run's requests by then."""
    return isinstance(output, Text) or (isinstance(output, Step) and isinstance(output.event, BranchToken))


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the first stop string, and whether one was found."""
    hits = [i for i in (text.find(stop) for stop in stops if stop) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def usage_of(result: MethodResult, answer_tokens: int) -> Usage:
    total = result.usage
    completion = total.completion_tokens + total.wasted_tokens
    return Usage.of(total.prompt_tokens, total.cached_tokens, completion, completion - answer_tokens)


class ChoiceRun:
    def __init__(self, index: int, method: Method, stops: list[str], reasoning: bool) -> None:
        """`stops`: cut the chosen answer there (a live answer's backend stops by itself); `reasoning`:
        send it."""
        self.index = index
        self.stops = stops
        self.reasoning = reasoning
        # The stage whose branch of the chosen candidate is the answer the client gets.
        self.answer_stage = method.answer_stage
        self.live_answer = method.live_answer
        self.transcript = Transcript(method)
        self._answers: dict[int | None, BranchEnded] = {}  # the answer stage's branch of each candidate

    def outputs(self, event: Event) -> list[Output]:
        if isinstance(event, BranchEnded) and event.stage == self.answer_stage:
            self._answers[event.candidate] = event
        if isinstance(event, Finished):
            return self._finished(event.result)
        if self.live_answer:
            is_answer = isinstance(event, BranchToken) and event.stage == self.answer_stage
            return self._text("content", event.text) if is_answer else []  # type: ignore[union-attr]
        if not self.reasoning:
            return []  # nothing to write: the transcript is not kept
        return self._text("reasoning", self.transcript.feed(event))

    def _finished(self, result: MethodResult) -> list[Output]:
        answer_branch = self._answers.get(result.chosen)
        answer_tokens = answer_branch.tokens if answer_branch else 0
        cut = answer_branch is not None and answer_branch.finish_reason == "length"
        outputs: list[Output] = []
        if not self.live_answer:
            answer, stopped = cut_at_stop(result.answer, self.stops)
            cut = cut and not stopped
            if self.reasoning:
                outputs += self._text("reasoning", self.transcript.finish(result))
            outputs += self._text("content", answer)
        outputs.append(Ended(self.index, "length" if cut else "stop", usage_of(result, answer_tokens)))
        return outputs

    def _text(self, field: TextField, text: str) -> list[Output]:
        return [Text(self.index, field, text)] if text else []
