"""A method run's reasoning as one readable text, written while the run goes on.

Plans, executions and ratings decode in parallel, so their tokens arrive interleaved. The transcript
follows one branch live, token by token; the text of the others waits and comes out whole, under its own
heading, when the followed branch ends; the next unfinished one is then followed live. The first token
of the run goes out the moment it arrives, and no branch's text is ever cut by another's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cepo.methods.events import (
    BranchEnded,
    BranchToken,
    CandidateFailed,
    CandidateScored,
    Event,
    MethodResult,
    RunStopped,
    Score,
)
from cepo.methods.method import Method

BranchKey = tuple[str, int | None, int]  # stage, candidate, branch


@dataclass
class _Block:
    """Text waiting for its turn: a branch's, or a note. Done when nothing more will be added."""

    text: list[str] = field(default_factory=list)
    done: bool = False


def heading(method: Method, key: BranchKey) -> str:
    stage, candidate, branch = key
    parts = [method.title(stage)]
    if stage in method.numbered_stages:
        parts[0] += f" {branch + 1}"
    if candidate is not None:
        parts.append(f"candidate {candidate + 1}")
    return f"[{' · '.join(parts)}]\n"


def ending(event: BranchEnded) -> str:
    if event.finish_reason == "length":
        return f" [cut at {event.tokens} tokens]\n\n"
    if event.finish_reason == "cancelled":
        return " [stopped: no longer needed]\n\n"
    return "\n\n"


def describe_score(event: CandidateScored) -> str:
    score: Score = event.score
    facts = [f"answer {event.answer!r}" if event.answer is not None else "no answer found"]
    if score.parses is not None:
        facts.append("code parses" if score.parses else "code does not parse")
    if score.examples_total is not None:
        facts.append(f"examples passed {score.examples_passed}/{score.examples_total}")
    if score.votes is not None:
        facts.append(f"votes {score.votes}")
    if score.rating is not None:
        facts.append(f"rating {score.rating:g}")
    return f"[Check · candidate {event.candidate + 1}] {'; '.join(facts)}\n\n"


def describe_failures(result: MethodResult) -> str:
    failed = [candidate for candidate in result.candidates if candidate.error is not None]
    return "".join(f"[Failed · candidate {c.index + 1}] {c.error}\n\n" for c in failed)


def describe_choice(result: MethodResult) -> str:
    agreed = " (every candidate agrees)" if result.agreed and len(result.candidates) > 1 else ""
    return f"[Chosen: candidate {result.chosen + 1}]{agreed}\n"


class Transcript:
    def __init__(self, method: Method) -> None:
        self.method = method
        self._live: BranchKey | None = None  # the branch whose tokens go out as they come
        self._waiting: dict[BranchKey | int, _Block] = {}  # in order of arrival; notes are keyed by number
        self._notes = 0

    def feed(self, event: Event) -> str:
        """The text `event` adds to the transcript now (often none: its branch waits its turn)."""
        if isinstance(event, BranchToken):
            return self._token((event.stage, event.candidate, event.branch), event.text)
        if isinstance(event, BranchEnded):
            return self._branch_ended((event.stage, event.candidate, event.branch), event)
        if isinstance(event, CandidateScored):
            return self._note(describe_score(event))
        if isinstance(event, CandidateFailed):
            return self._abandon(event.candidate)
        if isinstance(event, RunStopped):
            return self._note(f"[Stopped early: {event.reason}]\n\n")
        return ""

    def finish(self, result: MethodResult) -> str:
        """Whatever still waits, then which candidate was chosen."""
        self._live = None
        return self._drain(everything=True) + describe_failures(result) + describe_choice(result)

    def _token(self, key: BranchKey, text: str) -> str:
        if self._live is None:  # then nothing waits either: draining stops only at a running branch
            self._live = key
            return heading(self.method, key) + text
        if key == self._live:
            return text
        self._block(key).text.append(text)
        return ""

    def _branch_ended(self, key: BranchKey, event: BranchEnded) -> str:
        if key == self._live:
            self._live = None
            return ending(event) + self._drain()
        block = self._block(key)
        block.text.append(ending(event))
        block.done = True
        return self._drain() if self._live is None else ""

    def _abandon(self, candidate: int) -> str:
        """A failed candidate's unfinished branches end here: none will go on. (Why it failed is told at
        the end, with the scores: a request whose every candidate fails must not have begun its reply.)"""
        broken = " [failed]\n\n"
        for key, block in self._waiting.items():
            if isinstance(key, tuple) and key[1] == candidate and not block.done:
                block.text.append(broken)
                block.done = True
        if self._live is None or self._live[1] != candidate:
            return ""
        self._live = None
        return broken + self._drain()

    def _note(self, text: str) -> str:
        self._notes += 1
        self._waiting[self._notes] = _Block([text], done=True)
        return self._drain() if self._live is None else ""

    def _block(self, key: BranchKey) -> _Block:
        if key not in self._waiting:
            self._waiting[key] = _Block([heading(self.method, key)])
        return self._waiting[key]

    def _drain(self, everything: bool = False) -> str:
        """Waiting text in order, up to and including the first branch still running (followed next)."""
        out: list[str] = []
        while self._waiting:
            key = next(iter(self._waiting))
            block = self._waiting.pop(key)
            out.extend(block.text)
            if not block.done and not everything:
                self._live = key  # type: ignore[assignment]  # only branches are ever unfinished
                break
        return "".join(out)
