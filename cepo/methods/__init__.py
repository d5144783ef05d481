"""The reasoning methods, behind one entry point.

`run(method, backend, messages)` streams a run's events (cepo.methods.events), the last one `Finished`
with the whole result; `solve(...)` returns just the result. The CLI, the server and the eval harness
call these. Each method is one `Method` declaration (cepo.methods.method), in its own file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cepo.backends.base import Backend, Message
from cepo.checks import Example, classify, examples_in, unique
from cepo.errors import CepoError
from cepo.methods import best_of_n, cepo_method, plain, self_consistency
from cepo.methods.context import RunContext
from cepo.methods.events import Event, Finished, MethodResult
from cepo.methods.method import Method
from cepo.methods.settings import Options, RunSettings, check_options
from cepo.tasks import TaskSet

# The registry: a new method is its file, ending with its `Method(...)`, and one line here (or, from
# outside the package, one `register` call).
METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


for _module in (plain, self_consistency, best_of_n, cepo_method):
    register(_module.METHOD)

Tests = list[Example | str | tuple[str, str] | list[str] | dict[str, Any]]
_ROLES = ("system", "user", "assistant")


async def run(
    method: str,
    backend: Backend,
    messages: list[Message] | str,
    config: RunSettings | Options | None = None,
    tests: Tests | None = None,
) -> AsyncIterator[Event]:
    """Run `method` on the conversation `messages` (or one question) and stream its events.

    `config`: the method's settings, or options over its defaults; `tests`: public test cases of a code
    question (assert strings or (input, expected output) pairs), checked with the question's own examples.
    Leaving the iteration early cancels the run and everything it still generates."""
    ctx = prepare(method, backend, messages, config, tests)
    driver = TaskSet()
    driver.spawn(_drive(METHODS[method], ctx))
    try:
        while True:
            event = await ctx.events.get()
            if isinstance(event, Exception):
                raise event
            yield event
            if isinstance(event, Finished):
                return
    finally:
        await driver.cancel()


async def solve(
    method: str,
    backend: Backend,
    messages: list[Message] | str,
    config: RunSettings | Options | None = None,
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
    config: RunSettings | Options | None,
    tests: Tests | None,
) -> RunContext:
    """Check the request and gather what the run needs: settings, the kind of question, its examples."""
    spec = get_method(method)
    conversation = _conversation(messages)
    if not isinstance(config, RunSettings):
        config = configure(spec, config)
    elif not isinstance(config, spec.settings):
        raise CepoError(f"{type(config).__name__} are not the settings of {method}")
    given = [Example.coerce(test) for test in tests or []]
    question = conversation[-1]["content"]
    kind = classify(question, has_tests=bool(given)) if config.task == "auto" else config.task
    return RunContext(backend, config, conversation, kind, unique(given + examples_in(question)))


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise CepoError(f"unknown method {name!r}", hint=f"choose one of: {', '.join(METHODS)}")
    return METHODS[name]


def configure(method: Method, options: Options | None) -> RunSettings:
    """`method`'s settings from `options`, which may hold other methods' settings too, but nothing that
    no method knows."""
    return method.settings.of(check_options(options or {}, [method.settings, *_all_settings()]))


def check_all(options: Options) -> Options:
    """`options`, once every method has taken its settings from them (a config file's check)."""
    return check_options(options, _all_settings())


def _all_settings() -> list[type[RunSettings]]:
    return [method.settings for method in METHODS.values()]


async def _drive(method: Method, ctx: RunContext[Any]) -> None:
    """Run `method`; its result, or the error that stopped it, goes last on the event queue."""
    try:
        ctx.emit(Finished(result=await method.run(ctx)))
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
