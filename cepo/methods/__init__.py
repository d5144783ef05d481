"""The reasoning methods, behind one entry point.

`run(method, backend, messages)` streams a run's events (cepo.events), the last one `Finished` with the
whole result; `solve(...)` returns just the result. The CLI, the server and the eval harness call these.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from cepo.backends.base import Backend, Message
from cepo.checks import Example, classify, examples_in, unique
from cepo.config import CepoConfig
from cepo.errors import CepoError
from cepo.events import Event, Finished, MethodResult
from cepo.methods.best_of_n import best_of_n
from cepo.methods.cepo_method import cepo
from cepo.methods.context import RunContext
from cepo.methods.plain import plain
from cepo.methods.self_consistency import self_consistency

# Bump a method's version when a change alters what it generates or how it picks an answer: eval results
# it made before then are told apart from new ones instead of resuming as if the same method had made them.
# Each method has its own, so a change to cepo does not throw away the baselines' results.
# 2: cepo's code replies stop where their code block ends.
# 3: a code answer's examples run after the question's own imports and helper definitions.
# 4 (cepo): an empty plan's execution answers the question directly, at the plan's temperature.
# 5 (cepo): a short answer ends by stating the answer chosen, when its program computed it or an earlier
#   step stated it; before, the final text alone was scored.
METHOD_VERSIONS: dict[str, int] = {"plain": 3, "self-consistency": 3, "best-of-n": 3, "cepo": 5}

Method = Callable[[RunContext], Awaitable[MethodResult]]
METHODS: dict[str, Method] = {
    "plain": plain,
    "self-consistency": self_consistency,
    "best-of-n": best_of_n,
    "cepo": cepo,
}
Tests = list[Example | str | tuple[str, str] | list[str] | dict[str, Any]]
_ROLES = ("system", "user", "assistant")


async def run(
    method: str,
    backend: Backend,
    messages: list[Message] | str,
    config: CepoConfig | dict[str, Any] | None = None,
    tests: Tests | None = None,
) -> AsyncIterator[Event]:
    """Run `method` on the conversation `messages` (or one question) and stream its events.

    `config`: settings, or overrides of the defaults; `tests`: public test cases of a code question
    (assert strings or (input, expected output) pairs), checked along with the question's own examples.
    Leaving the iteration early cancels the run and everything it still generates."""
    ctx = prepare(method, backend, messages, config, tests)
    driver = asyncio.get_running_loop().create_task(_drive(METHODS[method], ctx))
    try:
        while True:
            event = await ctx.events.get()
            if isinstance(event, Exception):
                raise event
            yield event
            if isinstance(event, Finished):
                return
    finally:
        if not driver.done():
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)


async def solve(
    method: str,
    backend: Backend,
    messages: list[Message] | str,
    config: CepoConfig | dict[str, Any] | None = None,
    tests: Tests | None = None,
) -> MethodResult:
    """Run `method` to its end and return its result."""
    async for event in run(method, backend, messages, config, tests):
        if isinstance(event, Finished):
            return event.result
    raise AssertionError("a run always ends with Finished")


def prepare(
    method: str,
    backend: Backend,
    messages: list[Message] | str,
    config: CepoConfig | dict[str, Any] | None,
    tests: Tests | None,
) -> RunContext:
    """Check the request and gather what the run needs: settings, the kind of question, its examples."""
    if method not in METHODS:
        raise CepoError(f"unknown method {method!r}", hint=f"choose one of: {', '.join(METHODS)}")
    conversation = _conversation(messages)
    if not isinstance(config, CepoConfig):
        config = CepoConfig().merged(config)
    given = [Example.coerce(test) for test in tests or []]
    question = conversation[-1]["content"]
    kind = classify(question, has_tests=bool(given)) if config.task == "auto" else config.task
    return RunContext(backend, config, conversation, kind, unique(given + examples_in(question)))


async def _drive(method: Method, ctx: RunContext) -> None:
    """Run `method`; its result, or the error that stopped it, goes last on the event queue."""
    try:
        ctx.emit(Finished(result=await method(ctx)))
    except Exception as error:
        ctx.events.put_nowait(error)


def _conversation(messages: list[Message] | str) -> list[Message]:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not messages:
        raise CepoError("no messages: the conversation needs at least the user's question")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise CepoError(f"not a chat message: {message!r}", hint=f"each needs a role among {_ROLES}")
        if not isinstance(message.get("content"), str):
            raise CepoError(f"a {message['role']} message has no text content")
    if messages[-1]["role"] != "user":
        raise CepoError("the conversation must end with the user's question")
    if not messages[-1]["content"].strip():
        raise CepoError("the question is empty")
    return [{"role": m["role"], "content": m["content"]} for m in messages]
