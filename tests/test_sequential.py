"""SequentialBackend: every branch its own call, calls one after another (the reference's way to run)."""

from __future__ import annotations

import asyncio

from scripted_backend import ScriptedBackend, words
from test_methods_bench import SCRIPT
from test_methods_cepo import FIXED

from cepo.backends.base import GenerationStream, Prompt, Sampling
from cepo.backends.llama import LlamaEngine
from cepo.backends.sequential import SequentialBackend
from cepo.methods import solve


class OneAtATime(ScriptedBackend):
    """Records whether a call was ever made while an earlier one still had branches running."""

    overlapped = False

    def stream(self, prompt: Prompt, n: int = 1, sampling: Sampling | None = None) -> GenerationStream:
        self.overlapped |= any(len(call.branches) < call.n for call in self.calls)
        return super().stream(prompt, n, sampling)


async def test_branches_become_single_calls_made_one_after_another() -> None:
    inner = OneAtATime([("first", ["a b", "c d e", "f"]), ("second", "g h")])
    backend = SequentialBackend(inner)

    first, second = await asyncio.gather(
        backend.generate("first", 3, Sampling(seed=10)), backend.generate("second", 2, Sampling())
    )

    assert not inner.overlapped and [call.n for call in inner.calls] == [1] * 5
    assert [call.sampling.seed for call in inner.calls if call.rule == "first"] == [10, 11, 12]
    assert [b.text for b in first.branches] == ["a b", "c d e", "f"]
    assert [(b.index, b.tokens) for b in second.branches] == [(0, 2), (1, 2)]
    assert first.prompt_tokens == 3 * len(words("first"))  # each call reads the prompt again


async def test_a_branch_cancelled_while_waiting_is_never_called() -> None:
    inner = ScriptedBackend([("q", "one two three")])
    stream = SequentialBackend(inner).stream("q", 3)
    stream.cancel(2)
    async with stream:
        async for _ in stream:
            pass

    branches = stream.completion().branches
    assert [b.finish_reason for b in branches] == ["stop", "stop", "cancelled"]
    assert branches[2].tokens == 0 and len(inner.calls) == 2


async def test_cancelling_all_stops_the_running_call_and_the_rest() -> None:
    inner = ScriptedBackend([("q", " ".join(["word"] * 50))])
    stream = SequentialBackend(inner).stream("q", 3)
    async with stream:
        async for _ in stream:
            stream.cancel()
            break
    async for _ in stream:  # the ends of the cancelled branches still arrive
        pass

    assert [b.finish_reason for b in stream.completion().branches] == ["cancelled"] * 3
    assert len(inner.calls) == 1


async def test_a_failing_call_fails_the_request() -> None:
    backend = SequentialBackend(ScriptedBackend([("q", RuntimeError("backend down"))]))
    try:
        await backend.generate("q", 2)
    except RuntimeError as error:
        assert str(error) == "backend down"
    else:
        raise AssertionError("the failure did not reach the caller")


async def test_cepo_runs_the_same_on_it() -> None:
    inner = OneAtATime(SCRIPT)
    result = await solve(
        "cepo", SequentialBackend(inner), "How many r's in strawberry?", {**FIXED, "seed": 0}
    )

    assert result.extracted == "3" and not inner.overlapped
    assert all(call.n == 1 for call in inner.calls) and len(inner.calls) == 3 * (3 + 3 + 1 + 1)


async def test_greedy_branches_match_the_batched_engine(engine: LlamaEngine) -> None:
    greedy = Sampling(temperature=0, max_tokens=8)
    batched = await engine.generate("The capital of France is", 2, greedy)
    sequential = await SequentialBackend(engine).generate("The capital of France is", 2, greedy)

    assert [b.text for b in sequential.branches] == [b.text for b in batched.branches]
    assert sequential.prompt_tokens == 2 * batched.prompt_tokens
