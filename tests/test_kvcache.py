"""The KV mirror: shared cells are counted once, cached prefixes are found and evicted oldest first."""

from __future__ import annotations

from cepo.backends.kvcache import KVCache


class RecordingMemory:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int, int]] = []

    def seq_rm(self, seq: int, p0: int, p1: int) -> None:
        self.calls.append(("rm", seq, -1, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        self.calls.append(("cp", src, dst, p0, p1))


def test_branches_share_prompt_cells() -> None:
    memory = RecordingMemory()
    kv = KVCache(memory, n_cells=100, n_seqs=4)
    first = kv.acquire()
    kv.append(first, [1, 2, 3, 4])
    second = kv.acquire()
    kv.copy(first, second)
    assert kv.used_cells == 4
    kv.append(first, [5])
    kv.append(second, [6])
    assert kv.used_cells == 6
    assert memory.calls == [("cp", first, second, 0, 4)]


def test_finished_sequences_are_cached_until_their_room_is_needed() -> None:
    memory = RecordingMemory()
    kv = KVCache(memory, n_cells=10, n_seqs=3)
    old, new = kv.acquire(), kv.acquire()
    kv.append(old, [1, 2, 3])
    kv.append(new, [7, 8, 9])
    kv.release(old, keep=True)
    kv.release(new, keep=True)
    assert kv.live_cells() == 0 and kv.used_cells == 6
    assert kv.longest_prefix([1, 2, 9]) == (old, 2)
    assert kv.make_room(cells=6, seqs=1)  # evicts the least recently used: old
    assert kv.longest_prefix([1, 2, 9]) == (None, 0)
    assert kv.longest_prefix([7, 8]) == (new, 2)
    assert ("rm", old, -1, -1, -1) in memory.calls


def test_evicting_a_cached_prefix_keeps_cells_a_live_sequence_shares() -> None:
    kv = KVCache(RecordingMemory(), n_cells=10, n_seqs=3)
    source = kv.acquire()
    kv.append(source, [1, 2, 3, 4])
    kv.release(source, keep=True)
    reuser = kv.acquire()
    kv.copy(source, reuser, 3)
    kv.append(reuser, [5])
    assert kv.make_room(cells=10 - 4, seqs=2)  # the cache goes, its 4th cell with it
    assert kv.used_cells == 4 and kv.live_cells() == 4


def test_pinned_and_live_sequences_are_never_evicted() -> None:
    kv = KVCache(RecordingMemory(), n_cells=4, n_seqs=2)
    live, cached = kv.acquire(), kv.acquire()
    kv.append(live, [1, 2])
    kv.append(cached, [3, 4])
    kv.release(cached, keep=True)
    assert not kv.make_room(cells=2, seqs=0, pinned=cached)
    assert not kv.make_room(cells=3, seqs=0)
    assert kv.is_live(live)


def test_trimming_keeps_the_newest_cache_and_what_live_sequences_share() -> None:
    kv = KVCache(RecordingMemory(), n_cells=100, n_seqs=4)
    prompt = kv.acquire()
    kv.append(prompt, [1, 2, 3, 4])
    branch = kv.acquire()
    kv.copy(prompt, branch)
    kv.append(branch, [5])  # live: shares the prompt's 4 cells
    kv.release(prompt, keep=True)
    old, new = kv.acquire(), kv.acquire()
    kv.append(old, [6, 7, 8])
    kv.release(old, keep=True)
    kv.append(new, [9, 10])
    kv.release(new, keep=True)

    kv.trim(max_cached=2)  # old goes; the prompt's cells are held by the live branch, so cost nothing
    assert kv.longest_prefix([6, 7]) == (None, 0)
    assert kv.longest_prefix([9, 10]) == (new, 2) and kv.longest_prefix([1, 2, 3])[1] == 3
    assert kv.used_cells == 5 + 2
    kv.trim(max_cached=0)
    assert kv.used_cells == kv.live_cells() == 5 and kv.cached_seqs() == 0
    assert kv.longest_prefix([1, 2, 3]) == (branch, 3)  # live sequences still offer the prompt


def test_long_prefixes_compare_exactly() -> None:
    kv = KVCache(RecordingMemory(), n_cells=5000, n_seqs=2)
    seq = kv.acquire()
    tokens = list(range(1000))
    kv.append(seq, tokens)
    assert kv.longest_prefix([*tokens[:700], -1]) == (seq, 700)
    assert kv.longest_prefix([*tokens, 5]) == (seq, 1000)


def test_live_cells_are_counted_through_every_change() -> None:
    kv = KVCache(RecordingMemory(), n_cells=100, n_seqs=4)

    def counted_from_scratch() -> int:
        return len({cell for entry in kv._seqs.values() if entry.live for cell in entry.cells})

    prompt = kv.acquire()
    kv.append(prompt, [1, 2, 3])
    branch = kv.acquire()
    kv.copy(prompt, branch)
    kv.append(branch, [4])
    assert kv.live_cells() == counted_from_scratch() == 4
    kv.release(prompt, keep=True)  # the branch still holds the prompt's cells
    assert kv.live_cells() == counted_from_scratch() == 4
    reuser = kv.acquire()
    kv.copy(prompt, reuser, 2)  # a live copy of a cached prefix
    kv.release(branch, keep=False)
    assert kv.live_cells() == counted_from_scratch() == 2
    kv.release(reuser, keep=True)
    assert kv.live_cells() == counted_from_scratch() == 0
    assert kv.used_cells == 3
