"""The embedded engine on the real SmolLM2 model: batching, sharing, sampling, cancelling, limits."""

from __future__ import annotations

import asyncio
import queue
import threading

import pytest

from cepo.backends import (
    BranchEnd,
    Completion,
    GenerationStream,
    Sampling,
    StreamEvent,
    TokenEvent,
    open_backend,
)
from cepo.backends.llama import EngineConfig, LlamaEngine, shared_engine
from cepo.errors import GenerationError

pytestmark = pytest.mark.model

QUESTION = [{"role": "user", "content": "List three facts about Paris."}]
GREEDY = Sampling(temperature=0, max_tokens=48)


def assert_all_freed(engine: LlamaEngine) -> None:
    stats = engine.stats()
    assert stats["active_requests"] == 0
    assert stats["live_branches"] == 0
    assert stats["kv_cells_live"] == 0


async def test_greedy_branches_in_one_batch_match_the_prompt_alone(engine: LlamaEngine) -> None:
    engine.clear_cache()  # a fresh prefill
    alone = await engine.generate(QUESTION, n=1, sampling=GREEDY)
    together = await engine.generate(QUESTION, n=4, sampling=GREEDY)
    assert alone.branches[0].tokens > 5
    assert [b.text for b in together.branches] == [alone.branches[0].text] * 4
    assert [b.tokens for b in together.branches] == [alone.branches[0].tokens] * 4


async def test_branches_share_one_prefill(engine: LlamaEngine) -> None:
    prompt = [{"role": "user", "content": "Describe a quiet harbour town at dawn, in a few sentences."}]
    engine.clear_cache()
    before = engine.stats()
    assert before["cached_sequences"] == 0  # cleared by the time clear_cache returns
    stream = engine.stream(prompt, n=8, sampling=Sampling(temperature=0.8, max_tokens=1, seed=3))
    async for _ in stream:
        pass
    completion = stream.completion()
    # Eight one-token branches decode nothing beyond the prompt: its cells exist once, not eight times.
    assert engine.stats()["kv_cells_used"] - before["kv_cells_used"] == completion.prompt_tokens
    assert all(b.tokens == 1 for b in completion.branches)


async def test_the_load_totals_count_every_token_and_branch(engine: LlamaEngine) -> None:
    before = engine.load()
    completion = await engine.generate("Count: one, two,", 3, Sampling(max_tokens=6, ignore_eos=True, seed=1))
    load = engine.load().since(before)

    assert load.tokens == completion.completion_tokens == 18
    assert load.prefilled == completion.prompt_tokens - completion.cached_tokens > 0
    # 5 steps decode the 3 branches (their first tokens come with the prompt); never more than 3 at once
    assert load.steps >= 5 and 0 < load.branch_s <= 3 * load.busy_s
    assert "18 tokens" in load.describe(2.0) and "9.0 tok/s" in load.describe(2.0)


async def test_seeded_sampling_repeats_and_branches_differ(engine: LlamaEngine) -> None:
    sampling = Sampling(temperature=0.9, max_tokens=40, seed=7)
    first = await engine.generate(QUESTION, n=3, sampling=sampling)
    second = await engine.generate(QUESTION, n=3, sampling=sampling)
    assert [b.text for b in first.branches] == [b.text for b in second.branches]
    assert len({b.text for b in first.branches}) > 1  # seed + i per branch: not three copies


async def test_prefix_of_an_earlier_conversation_is_reused(engine: LlamaEngine) -> None:
    first = await engine.generate(QUESTION, n=1, sampling=GREEDY)
    follow_up = [
        *QUESTION,
        {"role": "assistant", "content": first.branches[0].text},
        {"role": "user", "content": "Now one more."},
    ]
    second = await engine.generate(follow_up, n=1, sampling=GREEDY)
    assert second.cached_tokens >= first.prompt_tokens
    assert second.cached_tokens < second.prompt_tokens


async def test_concurrent_requests_both_finish_and_free_their_cells(engine: LlamaEngine) -> None:
    other = [{"role": "user", "content": "Name a colour."}]
    a, b = await asyncio.gather(
        engine.generate(QUESTION, n=2, sampling=Sampling(temperature=0.7, max_tokens=40, seed=1)),
        engine.generate(other, n=1, sampling=GREEDY),
    )
    assert len(a.branches) == 2 and all(br.tokens > 0 for br in a.branches)
    assert b.branches[0].tokens > 0 and b.branches[0].finish_reason == "stop"
    assert_all_freed(engine)


async def test_stop_strings_and_max_tokens_set_the_finish_reason(engine: LlamaEngine) -> None:
    counting = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    free = await engine.generate(counting, n=1, sampling=Sampling(temperature=0, max_tokens=80))
    text = free.branches[0].text
    assert "5" in text
    stop = text[text.index("5") :][:2]  # a stop string the greedy text is known to contain
    stopped = await engine.generate(
        counting, n=1, sampling=Sampling(temperature=0, max_tokens=80, stop=[stop])
    )
    assert stopped.branches[0].finish_reason == "stop"
    assert stopped.branches[0].text == text[: text.index(stop)]
    cut = await engine.generate(counting, n=1, sampling=Sampling(temperature=0, max_tokens=5))
    assert cut.branches[0].finish_reason == "length"
    assert cut.branches[0].tokens == 5
    ended = await engine.generate(QUESTION, n=1, sampling=Sampling(temperature=0, max_tokens=400))
    assert ended.branches[0].finish_reason == "stop"  # the model's end-of-turn token
    assert ended.branches[0].tokens < 400


async def test_streaming_events_rebuild_each_branch(engine: LlamaEngine) -> None:
    texts = ["", ""]
    async with engine.stream(QUESTION, n=2, sampling=Sampling(temperature=0.8, max_tokens=30)) as stream:
        async for event in stream:
            if isinstance(event, TokenEvent):
                texts[event.branch] += event.text
    assert texts == [b.text for b in stream.completion().branches]


async def test_cancelling_one_branch_ends_it_and_frees_its_cells(engine: LlamaEngine) -> None:
    sampling = Sampling(temperature=0.8, max_tokens=200, ignore_eos=True)
    async with engine.stream(QUESTION, n=2, sampling=sampling) as stream:
        async for event in stream:
            if isinstance(event, TokenEvent) and event.branch == 0:
                stream.cancel(0)
            if isinstance(event, BranchEnd) and event.branch == 0:
                assert event.result.finish_reason == "cancelled"
                assert event.result.tokens < 200
    assert stream.completion().branches[1].finish_reason == "length"
    assert_all_freed(engine)


async def test_leaving_a_stream_early_cancels_the_request(engine: LlamaEngine) -> None:
    sampling = Sampling(temperature=0.8, max_tokens=300, ignore_eos=True)
    async with engine.stream(QUESTION, n=3, sampling=sampling) as stream:
        async for _ in stream:
            break
    # The engine ends every branch as cancelled; wait for that through the same stream.
    remaining = [e async for e in stream if isinstance(e, BranchEnd)]
    assert {e.result.finish_reason for e in remaining} == {"cancelled"}
    assert_all_freed(engine)


async def test_requests_that_can_never_fit_fail_clearly(engine: LlamaEngine) -> None:
    with pytest.raises(GenerationError, match="exceeds"):
        engine.stream(QUESTION, n=1, sampling=Sampling(max_tokens=engine.max_branch_len))
    with pytest.raises(GenerationError, match="KV cells"):
        engine.stream(QUESTION, n=16, sampling=Sampling(max_tokens=engine.n_cells // 16))
    with pytest.raises(GenerationError, match="messages"):
        engine.stream([{"role": "user"}], n=1)


async def test_requests_beyond_free_cells_wait_for_room(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each request reserves its prompt and max_tokens cells, more than half the cache: the three are
    # submitted together, but each is admitted (and streams its first event) only once the one before it
    # has ended and freed its cells.
    delivered: list[tuple[GenerationStream, StreamEvent]] = []
    push = GenerationStream.push

    def record(stream: GenerationStream, events: list[StreamEvent]) -> None:
        delivered.extend((stream, event) for event in events)  # in the scheduler thread's order
        push(stream, events)

    monkeypatch.setattr(GenerationStream, "push", record)
    sampling = Sampling(temperature=0, max_tokens=engine.n_cells // 2)  # greedy: ends after a few tokens
    short = [{"role": "user", "content": "Name a colour."}]
    streams = [engine.stream(short, 1, sampling) for _ in range(3)]
    for stream in streams:
        async for _ in stream:
            pass
        assert stream.completion().branches[0].finish_reason in ("stop", "length")

    order = [stream for stream, _ in delivered]
    first = [order.index(stream) for stream in streams]
    last = [len(order) - 1 - order[::-1].index(stream) for stream in streams]
    assert all(isinstance(delivered[i][1], BranchEnd) for i in last)
    assert first[1] > last[0] and first[2] > last[1]  # oldest first, each after the one before it ended
    assert_all_freed(engine)


async def test_past_busy_cells_a_request_waits_until_the_running_ones_finish() -> None:
    engine = LlamaEngine(EngineConfig(n_ctx=1024, busy_cells=64))
    try:
        sampling = Sampling(max_tokens=40, ignore_eos=True, seed=0)
        first, second = engine.stream("One, two,", 1, sampling), engine.stream("Red, green,", 1, sampling)
        async with first:
            tokens = 0
            async for _ in first:
                tokens += 1
                if tokens == 5:  # the engine has read both requests by now, and runs only the first
                    assert (engine.stats()["active_requests"], engine.stats()["waiting_requests"]) == (1, 1)
        async with second:
            async for _ in second:
                pass
        assert second.completion().branches[0].tokens == 40
    finally:
        engine.close()


async def test_stats_read_while_branches_decode_stay_consistent(engine: LlamaEngine) -> None:
    # /metrics reads stats() on its own thread at every scrape. Here a thread reads it once for every event
    # the caller receives (a handshake, not a busy loop, so it does not starve the scheduler of the GIL)
    # while eight branches of two requests decode and end.
    scrapes: queue.SimpleQueue[bool] = queue.SimpleQueue()  # True: read once more; False: stop
    seen: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def scrape() -> None:
        try:
            while scrapes.get():
                seen.append(engine.stats())
        except BaseException as error:
            errors.append(error)

    async def read(stream: GenerationStream) -> Completion:
        async for _ in stream:
            scrapes.put(True)
        return stream.completion()

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        sampling = Sampling(temperature=0.8, max_tokens=48, ignore_eos=True, seed=5)
        streams = [engine.stream(QUESTION, 4, sampling), engine.stream("Count: one, two,", 4, sampling)]
        completions = await asyncio.gather(*(read(stream) for stream in streams))
    finally:
        scrapes.put(False)
        scraper.join()

    assert errors == []
    assert all(b.tokens == 48 for c in completions for b in c.branches)
    assert any(stats["live_branches"] > 0 for stats in seen)  # it read while branches decoded
    for stats in seen:
        assert stats["kv_cells"] == engine.n_cells
        assert stats["kv_cells_live"] <= stats["kv_cells_used"] <= engine.n_cells
        assert stats["waiting_requests"] + stats["active_requests"] <= 2
        assert stats["live_branches"] <= 4 * stats["active_requests"]
        assert stats["kv_cells_live"] > 0 or stats["live_branches"] == 0
    assert_all_freed(engine)
    assert engine.stats()["waiting_requests"] == 0


def test_a_caller_whose_event_loop_closed_does_not_disturb_the_others(engine: LlamaEngine) -> None:
    async def abandon() -> None:
        engine.stream(QUESTION, n=2, sampling=Sampling(max_tokens=300, ignore_eos=True))  # never read

    async def ask() -> int:
        return (await engine.generate(QUESTION, n=1, sampling=GREEDY)).branches[0].tokens

    asyncio.run(abandon())
    assert asyncio.run(ask()) > 5
    assert_all_freed(engine)  # the abandoned request was cancelled long before this one finished


async def test_an_engine_with_its_own_thread_count_is_not_the_shared_one(engine: LlamaEngine) -> None:
    own = open_backend(threads=1)
    try:
        assert isinstance(own, LlamaEngine) and own.threads == 1 and own is not shared_engine()
        assert (await own.generate("Hi", 1, Sampling(max_tokens=2, ignore_eos=True))).completion_tokens == 2
    finally:
        await own.aclose()


async def test_a_closed_shared_engine_is_replaced_not_reused() -> None:
    first = shared_engine()
    first.close()
    with pytest.raises(GenerationError, match="closed"):
        first.clear_cache()  # no scheduler thread is left to answer it
    second = shared_engine()
    try:
        assert second is not first
        assert (await second.generate("Hello", n=1, sampling=Sampling(max_tokens=2))).branches[0].tokens > 0
    finally:
        second.close()
