"""A Backend whose replies are scripted per prompt, for unit tests of the methods.

A rule is (pattern, reply): the first rule whose regex is found in the prompt's last message answers.
A reply is a text, a list of texts (successive branches take the next one; the last repeats), a
function of the whole prompt's text, or an exception the request fails with. A text wrapped in `Held`
keeps its branch open once it is out, until the branch is cancelled: a branch still decoding when the
run's other work ends, however long that work takes.

Words are tokens: a branch emits one word per step, all branches of all requests stepping together as
in a batched engine, and a reply longer than `max_tokens` words is cut there with finish_reason
"length". Every request is recorded in `calls`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from cepo.backends.base import (
    Backend,
    Branch,
    BranchEnd,
    FinishReason,
    GenerationStream,
    Prompt,
    Sampling,
    StreamEvent,
    TokenEvent,
)


@dataclass(frozen=True)
class Held:
    text: str


Text = str | Held
Reply = Text | list[str] | Callable[[str], Text] | Exception  # an Exception: the request fails with it


def prompt_text(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


def last_message(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


@dataclass
class Call:
    prompt: Prompt
    n: int
    sampling: Sampling
    rule: str  # the pattern that answered
    branches: list[Branch] = field(default_factory=list)  # in the order they ended

    @property
    def last_message(self) -> str:
        return last_message(self.prompt)


class ScriptedBackend(Backend):
    model = "scripted"

    def __init__(self, rules: list[tuple[str, Reply]], default: str = "I do not know.") -> None:
        self.rules = rules
        self.default = default
        self.calls: list[Call] = []
        self._taken: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def stream(self, prompt: Prompt, n: int = 1, sampling: Sampling | None = None) -> GenerationStream:
        sampling = sampling or Sampling()
        pattern, reply = next(
            ((p, r) for p, r in self.rules if re.search(p, last_message(prompt))), ("", self.default)
        )
        call = Call(prompt, n, sampling, pattern)
        self.calls.append(call)
        cancelled: set[int] = set()
        woken = asyncio.Event()  # a cancel, for branches that are held

        def on_cancel(branch: int | None) -> None:
            cancelled.update(range(n) if branch is None else {branch})
            woken.set()

        stream = GenerationStream(n, on_cancel)
        stream.prompt_tokens = len(words(prompt_text(prompt)))
        if isinstance(reply, Exception):
            stream.end(reply)
            return stream
        texts = [self._text(pattern, reply, prompt) for _ in range(n)]
        task = asyncio.get_running_loop().create_task(self._play(stream, call, texts, cancelled, woken))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return stream

    async def idle(self) -> None:
        """Wait until every request has played out."""
        while self._tasks:
            await asyncio.gather(*self._tasks)

    @property
    def produced_tokens(self) -> int:
        return sum(branch.tokens for call in self.calls for branch in call.branches)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(words(prompt_text(call.prompt))) for call in self.calls)

    def calls_to(self, pattern: str) -> list[Call]:
        return [call for call in self.calls if call.rule == pattern]

    def _text(self, pattern: str, reply: Text | list[str] | Callable[[str], Text], prompt: Prompt) -> Text:
        if isinstance(reply, str | Held):
            return reply
        if isinstance(reply, list):
            taken = self._taken.get(pattern, 0)
            self._taken[pattern] = taken + 1
            return reply[min(taken, len(reply) - 1)]
        return reply(prompt_text(prompt))

    async def _play(
        self,
        stream: GenerationStream,
        call: Call,
        texts: list[Text],
        cancelled: set[int],
        woken: asyncio.Event,
    ) -> None:
        held = {i for i, text in enumerate(texts) if isinstance(text, Held)}
        tokens = [words(text.text if isinstance(text, Held) else text) for text in texts]
        emitted = [0] * len(texts)
        live = set(range(len(texts)))
        while live:
            events: list[StreamEvent] = []
            for i in sorted(live):
                reason: FinishReason | None = None
                if i in cancelled:
                    reason = "cancelled"
                elif emitted[i] == len(tokens[i]) and i in held:
                    continue  # out, and open until cancelled
                elif emitted[i] == len(tokens[i]):
                    reason = "stop"
                elif emitted[i] == call.sampling.max_tokens:
                    reason = "length"
                if reason is None:
                    events.append(TokenEvent(i, tokens[i][emitted[i]]))
                    emitted[i] += 1
                    continue
                branch = Branch(i, "".join(tokens[i][: emitted[i]]), emitted[i], reason)
                call.branches.append(branch)
                events.append(BranchEnd(branch))
                live.discard(i)
            if events:
                stream.push(events)
                await asyncio.sleep(0)  # one decode step: let the consumers run
            else:  # every live branch is held
                await woken.wait()
                woken.clear()
        stream.end()
