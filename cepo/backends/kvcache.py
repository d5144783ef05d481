"""Which tokens each llama.cpp sequence holds in the unified KV cache, and which cells they share.

llama.cpp lets several sequences point at the same cell (`llama_memory_seq_cp`): that is how N branches share
one prefilled prompt, and how a new request reuses the prefix of an earlier one. It does not report which
tokens a sequence holds or how many cells are in use, so this mirror keeps both: every cell gets an id
when its token is decoded, sequences hold lists of cell ids, and a cell is free once no sequence refers to it.

Sequences are live (a branch is decoding into them) or cached (finished, kept for prefix reuse until their
cells or their id are needed: least recently used first).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol


class Memory(Protocol):
    """The two llama.cpp memory calls the mirror drives (positions p0 <= pos < p1, -1 for open ends)."""

    def seq_rm(self, seq: int, p0: int, p1: int) -> None: ...

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None: ...


@dataclass
class _Sequence:
    tokens: list[int] = field(default_factory=list)
    cells: list[int] = field(default_factory=list)
    live: bool = True
    last_used: int = 0


class KVCache:
    def __init__(self, memory: Memory, n_cells: int, n_seqs: int) -> None:
        self.memory = memory
        self.n_cells = n_cells
        self.n_seqs = n_seqs
        self._seqs: dict[int, _Sequence] = {}
        self._refs: Counter[int] = Counter()  # cell -> sequences holding it
        self._live_refs: Counter[int] = Counter()  # cell -> live sequences holding it, so counting is O(1)
        self._cell_ids = itertools.count()
        self._clock = itertools.count(1)

    # What is held.
    @property
    def used_cells(self) -> int:
        return len(self._refs)

    @property
    def free_cells(self) -> int:
        return self.n_cells - self.used_cells

    @property
    def free_seqs(self) -> int:
        return self.n_seqs - len(self._seqs)

    def live_cells(self) -> int:
        """Cells that some live sequence needs (the rest could be evicted)."""
        return len(self._live_refs)

    def cached_seqs(self) -> int:
        return sum(not seq.live for seq in self._seqs.values())

    def is_live(self, seq: int) -> bool:
        entry = self._seqs.get(seq)
        return entry is not None and entry.live

    def tokens(self, seq: int) -> list[int]:
        return self._seqs[seq].tokens

    # Changes, each mirrored in llama.cpp's memory.
    def acquire(self) -> int:
        """A free sequence id, as a new live, empty sequence. The caller made room with `make_room`."""
        seq = next(i for i in range(self.n_seqs) if i not in self._seqs)
        self._seqs[seq] = _Sequence(last_used=next(self._clock))
        return seq

    def append(self, seq: int, tokens: list[int]) -> None:
        """Record tokens just decoded into `seq` (llama.cpp already wrote their cells)."""
        cells = list(itertools.islice(self._cell_ids, len(tokens)))
        entry = self._seqs[seq]
        entry.tokens.extend(tokens)
        entry.cells.extend(cells)
        self._refs.update(cells)
        if entry.live:
            self._live_refs.update(cells)

    def copy(self, src: int, dst: int, length: int | None = None) -> None:
        """Make empty `dst` share the first `length` cells of `src` (all of them by default)."""
        source, target = self._seqs[src], self._seqs[dst]
        assert not target.tokens, "copy into an empty sequence only"
        length = len(source.tokens) if length is None else length
        self.memory.seq_cp(src, dst, 0, length)
        target.tokens = source.tokens[:length]
        target.cells = source.cells[:length]
        self._refs.update(target.cells)
        if target.live:
            self._live_refs.update(target.cells)
        source.last_used = next(self._clock)

    def release(self, seq: int, keep: bool) -> None:
        """A branch ended: keep its cells as a cache for later prefixes, or free them now."""
        if keep:
            entry = self._seqs[seq]
            entry.live = False
            entry.last_used = next(self._clock)
            _unref(self._live_refs, entry.cells)
        else:
            self._remove(seq)

    def longest_prefix(self, tokens: list[int]) -> tuple[int | None, int]:
        """The sequence sharing the longest prefix with `tokens`, and that length (0 if none)."""
        best_seq, best_len = None, 0
        for seq, entry in self._seqs.items():
            held = entry.tokens
            limit = min(len(held), len(tokens))
            if limit <= best_len:
                continue
            length = _common_prefix(held, tokens, limit)
            if length > best_len:
                best_seq, best_len = seq, length
        return best_seq, best_len

    def make_room(self, cells: int, seqs: int, pinned: int | None = None) -> bool:
        """Evict cached sequences, least recently used first, until `cells` and `seqs` are free."""
        while self.free_cells < cells or self.free_seqs < seqs:
            cached = [(e.last_used, s) for s, e in self._seqs.items() if not e.live and s != pinned]
            if not cached:
                return False
            self._remove(min(cached)[1])
        return True

    def trim(self, max_cached: int) -> None:
        """Evict cached sequences, least recently used first, until the cells that only cached sequences
        hold number at most `max_cached`."""
        for _, seq in sorted((e.last_used, s) for s, e in self._seqs.items() if not e.live):
            if self.used_cells - self.live_cells() <= max_cached:
                return
            self._remove(seq)

    def _remove(self, seq: int) -> None:
        entry = self._seqs.pop(seq)
        self.memory.seq_rm(seq, -1, -1)
        _unref(self._refs, entry.cells)
        if entry.live:
            _unref(self._live_refs, entry.cells)


def _unref(refs: Counter[int], cells: list[int]) -> None:
    """Drop one reference to each cell; a cell nothing refers to any more leaves the count."""
    refs.subtract(cells)
    for cell in cells:
        if refs[cell] <= 0:
            del refs[cell]


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    # Compare in chunks: list slices compare in C, so long shared prompts cost little Python time.
    step, n = 256, 0
    while n < limit:
        end = min(n + step, limit)
        if a[n:end] == b[n:end]:
            n = end
            continue
        while a[n] == b[n]:
            n += 1
        return n
    return n
