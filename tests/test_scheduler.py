"""Admission without a model: which waiting generations start, which wait for room, which fail, and which
cached prefixes are reused or evicted. The KV cache runs on a fake memory that records llama.cpp's calls.

The tests are async only because a GenerationStream belongs to an event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from test_kvcache import RecordingMemory

from cepo.backends.base import GenerationStream, Sampling
from cepo.backends.kvcache import KVCache
from cepo.backends.scheduler import EngineStats, Generation, Scheduler


@dataclass
class FakeBranch:
    generated: int = 0
    finished: bool = False


class Harness:
    """A scheduler over a fake KV cache, and the few moves of the engine's thread that free or fill cells."""

    def __init__(self, n_cells: int = 100, busy_cells: int = 10_000, cache_cells: int = 10_000) -> None:
        self.memory = RecordingMemory()
        self.kv = KVCache(self.memory, n_cells=n_cells, n_seqs=8)
        self.scheduler: Scheduler[FakeBranch] = Scheduler(self.kv, busy_cells, cache_cells)

    def submit(self, tokens: list[int], n: int = 1, max_tokens: int = 40) -> Generation[FakeBranch]:
        stream = GenerationStream(n, on_cancel=lambda branch: None)
        generation: Generation[FakeBranch] = Generation(
            tokens, n, Sampling(max_tokens=max_tokens), stream, 0.0
        )
        self.scheduler.submit(generation)
        return generation

    def run(self, generation: Generation[FakeBranch], tokens_each: int) -> None:
        """Prefill the rest of the prompt, fork the branches, and decode `tokens_each` tokens into each."""
        first = generation.seqs[0]
        self.kv.append(first, generation.tokens[generation.prefilled :])
        generation.prefilled = len(generation.tokens)
        for seq in generation.seqs[1:]:
            self.kv.copy(first, seq)
        generation.branches = [FakeBranch(generated=tokens_each) for _ in generation.seqs]
        for seq in generation.seqs:
            self.kv.append(seq, [-1] * tokens_each)

    def finish(self, generation: Generation[FakeBranch], keep: bool = True) -> None:
        for branch, seq in zip(generation.branches, generation.seqs, strict=True):
            branch.finished = True
            self.kv.release(seq, keep=keep)
            self.scheduler.cells_freed()
        self.scheduler.retire([generation])

    def cached(self, tokens: list[int]) -> int:
        """A finished sequence holding `tokens`, as an earlier generation would leave it."""
        generation = self.submit(tokens, max_tokens=1)
        assert self.scheduler.admit() == []
        self.run(generation, tokens_each=0)
        self.finish(generation)
        return generation.seqs[0]


def tokens(start: int, count: int) -> list[int]:
    return list(range(start, start + count))


async def test_waiting_generations_start_oldest_first_while_their_worst_case_fits() -> None:
    harness = Harness(n_cells=100)
    first, second, third = (harness.submit(tokens(100 * i, 10)) for i in range(3))  # 10 + 40 cells each
    assert harness.scheduler.admit() == []
    assert harness.scheduler.active == [first, second]
    assert harness.scheduler.waiting == [third]
    assert first.seqs != second.seqs and third.seqs == []


async def test_a_generation_waits_until_a_running_one_frees_its_cells() -> None:
    harness = Harness(n_cells=100)
    first, second = harness.submit(tokens(0, 10), max_tokens=60), harness.submit(tokens(100, 10))
    harness.scheduler.admit()
    assert harness.scheduler.waiting == [second]

    harness.run(first, tokens_each=20)
    assert harness.scheduler.admit() == [] and harness.scheduler.waiting == [second]  # nothing was freed
    harness.finish(first, keep=False)
    harness.scheduler.admit()
    assert harness.scheduler.active == [second] and harness.scheduler.waiting == []


async def test_past_busy_cells_a_generation_waits_even_with_free_cells_unless_nothing_runs() -> None:
    harness = Harness(n_cells=1000, busy_cells=60)
    first, second = harness.submit(tokens(0, 10)), harness.submit(tokens(100, 10))
    harness.scheduler.admit()
    assert harness.scheduler.active == [first] and harness.scheduler.waiting == [second]
    assert harness.kv.free_cells == 1000

    alone = Harness(n_cells=1000, busy_cells=30)
    big = alone.submit(tokens(0, 10))  # 50 cells: more than busy_cells, but it delays nobody
    alone.scheduler.admit()
    assert alone.scheduler.active == [big]


async def test_a_generation_that_cannot_fit_even_alone_fails_and_the_next_one_starts() -> None:
    harness = Harness(n_cells=100)
    too_big = harness.submit(tokens(0, 10), n=2, max_tokens=50)  # 10 + 2 x 50 cells
    fits = harness.submit(tokens(100, 10))
    [(failed, error)] = harness.scheduler.admit()
    assert failed is too_big and error is not None and "does not fit" in str(error)
    assert harness.scheduler.active == [fits] and harness.scheduler.waiting == []


async def test_a_generation_cancelled_while_waiting_leaves_without_taking_a_sequence() -> None:
    harness = Harness(n_cells=100)
    running, waiting = harness.submit(tokens(0, 10), max_tokens=60), harness.submit(tokens(100, 10))
    harness.scheduler.admit()
    harness.scheduler.cancel_all(waiting)
    assert harness.scheduler.admit() == [(waiting, None)]
    assert harness.scheduler.active == [running] and harness.scheduler.waiting == []
    assert waiting.seqs == [] and harness.kv.free_seqs == 8 - 1


async def test_a_cached_prefix_is_shared_and_its_last_prompt_token_decoded_again() -> None:
    harness = Harness(n_cells=100)
    source = harness.cached(tokens(1, 8))
    longer = harness.submit(tokens(1, 10))
    harness.scheduler.admit()
    assert longer.prefilled == longer.stream.cached_tokens == 8
    assert ("cp", source, longer.seqs[0], 0, 8) in harness.memory.calls
    harness.run(longer, tokens_each=0)
    harness.finish(longer)

    same = harness.submit(tokens(1, 8))
    harness.scheduler.admit()
    assert same.prefilled == 7  # the last token is decoded again, for the logits its branches sample from


async def test_room_for_a_reused_prefix_comes_from_evicting_other_cached_sequences_oldest_first() -> None:
    harness = Harness(n_cells=100)
    older = harness.cached(tokens(500, 40))
    newer = harness.cached(tokens(600, 5))
    prefix = harness.cached(tokens(1, 20))
    generation = harness.submit(tokens(1, 30), max_tokens=50)  # reusing 20 cells: 10 + 50 more
    harness.scheduler.admit()
    assert generation.prefilled == 20
    assert ("cp", prefix, generation.seqs[0], 0, 20) in harness.memory.calls
    assert ("rm", older, -1, -1, -1) in harness.memory.calls
    assert harness.kv.tokens(newer) == tokens(600, 5)  # enough room once the older one went


async def test_a_prefix_that_leaves_too_little_room_is_evicted_and_the_prompt_prefilled_whole() -> None:
    harness = Harness(n_cells=100)
    source = harness.cached(tokens(1, 40))
    generation = harness.submit([*tokens(1, 5), *tokens(100, 50)])  # reuses 5 cells but keeps 40 held
    harness.scheduler.admit()
    assert harness.scheduler.active == [generation] and generation.prefilled == 0
    assert ("rm", source, -1, -1, -1) in harness.memory.calls
    assert not any(call[0] == "cp" for call in harness.memory.calls)


async def test_admission_trims_the_cache_to_cache_cells() -> None:
    harness = Harness(n_cells=100, cache_cells=10)
    old = harness.cached(tokens(500, 20))
    harness.submit(tokens(1, 5))
    harness.scheduler.admit()
    assert ("rm", old, -1, -1, -1) in harness.memory.calls
    assert harness.kv.cached_seqs() == 0


async def test_the_snapshot_counts_generations_branches_and_cells() -> None:
    harness = Harness(n_cells=200, busy_cells=100)
    harness.cached(tokens(500, 4))
    running = harness.submit(tokens(0, 10), n=2, max_tokens=20)
    harness.submit(tokens(100, 10), max_tokens=60)
    harness.scheduler.admit()
    harness.run(running, tokens_each=3)
    running.branches[1].finished = True
    harness.kv.release(running.seqs[1], keep=True)
    assert harness.scheduler.snapshot() == EngineStats(
        waiting_requests=1,
        active_requests=1,
        live_branches=1,
        kv_cells=200,
        kv_cells_used=4 + 10 + 2 * 3,
        kv_cells_live=10 + 3,
        cached_sequences=2,
    )
