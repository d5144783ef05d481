"""Which generations the embedded engine runs, and the counts it publishes for metrics.

The engine's scheduler thread is the only caller. A generation waits until its worst case fits in the KV
cache beside the running ones; admitting it may reuse a cached prefix or evict cached sequences. Nothing here
calls llama.cpp but through the `KVCache`'s memory, so the policy is tested with a fake memory and no model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from cepo.backends.base import GenerationStream, Sampling
from cepo.backends.kvcache import KVCache
from cepo.errors import GenerationError


class BranchProgress(Protocol):
    """What admission reads of a branch: the tokens it has sampled, and whether it has ended."""

    generated: int
    finished: bool


BranchT = TypeVar("BranchT", bound=BranchProgress)


@dataclass(eq=False)
class Generation(Generic[BranchT]):
    """One prompt and its n branches, from submission until the last branch ends."""

    tokens: list[int]
    n: int
    sampling: Sampling
    stream: GenerationStream
    submitted_at: float
    branches: list[BranchT] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    prefilled: int = 0  # prompt tokens already in the KV cache of seqs[0]
    admitted_at: float = 0.0
    prefilled_at: float = 0.0
    cancel_all: bool = False
    cancelled_branches: set[int] = field(default_factory=set)

    @property
    def prefilling(self) -> bool:
        return self.prefilled < len(self.tokens)

    def reserved_cells(self) -> int:
        """Cells it may still fill: the rest of its prompt, and each live branch's remaining budget."""
        budget = self.sampling.max_tokens
        if not self.branches:
            return len(self.tokens) - self.prefilled + self.n * budget
        return sum(budget - b.generated for b in self.branches if not b.finished)


@dataclass(frozen=True, slots=True)
class EngineStats:
    """What metrics read of the engine, as the scheduler last published it."""

    waiting_requests: int
    active_requests: int
    live_branches: int
    kv_cells: int
    kv_cells_used: int
    kv_cells_live: int
    cached_sequences: int


class Scheduler(Generic[BranchT]):
    """The waiting and running generations, and which waiting ones may start."""

    def __init__(self, kv: KVCache, busy_cells: int, cache_cells: int) -> None:
        self.kv = kv
        self.busy_cells = busy_cells
        self.cache_cells = cache_cells
        self.waiting: list[Generation[BranchT]] = []
        self.active: list[Generation[BranchT]] = []
        self._room_changed = False  # a generation arrived or cells were freed since admission last gave up

    def submit(self, generation: Generation[BranchT]) -> None:
        self.waiting.append(generation)
        self._room_changed = True

    def cancel_all(self, generation: Generation[BranchT]) -> None:
        """Cancel every branch: a waiting one leaves at the next admission, a running one frees room."""
        generation.cancel_all = True
        self._room_changed = True

    def cells_freed(self) -> None:
        self._room_changed = True

    def retire(self, ended: list[Generation[BranchT]]) -> None:
        self.active = [g for g in self.active if g not in ended]

    def admit(self) -> list[tuple[Generation[BranchT], GenerationError | None]]:
        """Start waiting generations, oldest first, while their worst case fits beside the running ones (and,
        unless nothing runs, within `busy_cells`). Returns those that ended without starting: cancelled ones
        (with None) and ones that cannot fit even alone (with their error)."""
        if not self._room_changed:
            return []  # nothing arrived or ended since the last try: it would fail the same way, every step
        self._room_changed = False
        self.kv.trim(self.cache_cells)  # once a step, after branches ended: not once per branch
        unstarted: list[tuple[Generation[BranchT], GenerationError | None]] = [
            (g, None) for g in self.waiting if g.cancel_all
        ]
        self.waiting = [g for g in self.waiting if not g.cancel_all]
        while self.waiting:
            oldest = self.waiting[0]
            reserved = sum(g.reserved_cells() for g in self.active)
            source, reused = self.kv.longest_prefix(oldest.tokens)
            reused = min(reused, len(oldest.tokens) - 1)  # the last prompt token is decoded for its logits
            budget = oldest.n * oldest.sampling.max_tokens
            prompt = len(oldest.tokens)
            if self.active and self.kv.live_cells() + reserved + prompt - reused + budget > self.busy_cells:
                break  # it would fit, but slow the running generations down more than its branches add
            if not (
                reused and self.kv.make_room(reserved + prompt - reused + budget, oldest.n, pinned=source)
            ):
                reused = 0  # without the cached prefix (which may be evicted now to make room)
                if not self.kv.make_room(reserved + prompt + budget, oldest.n):
                    if self.active:
                        break  # wait for running generations to finish and free their cells
                    # Nothing runs and it still does not fit: the engine checks sizes first, but never hang.
                    self.waiting.pop(0)
                    unstarted.append((oldest, GenerationError("request does not fit in the KV cache")))
                    continue
            self.waiting.pop(0)
            oldest.seqs = [self.kv.acquire() for _ in range(oldest.n)]
            if reused and source is not None:
                self.kv.copy(source, oldest.seqs[0], reused)
            oldest.prefilled = reused
            oldest.stream.cached_tokens = reused
            oldest.admitted_at = time.perf_counter()
            self.active.append(oldest)
        return unstarted

    def snapshot(self) -> EngineStats:
        return EngineStats(
            waiting_requests=len(self.waiting),
            active_requests=len(self.active),
            live_branches=sum(not b.finished for g in self.active for b in g.branches),
            kv_cells=self.kv.n_cells,
            kv_cells_used=self.kv.used_cells,
            kv_cells_live=self.kv.live_cells(),
            cached_sequences=self.kv.cached_seqs(),
        )
