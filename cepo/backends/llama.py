"""The embedded engine: one GGUF model, every branch of every request decoding in one llama.cpp batch.

A scheduler thread owns the llama.cpp context and all the engine's state: other threads post work to its
inbox and read the stats it publishes. Each step it admits what fits (`scheduler.Scheduler`), builds one
batch holding the next token of every live branch plus a chunk of any prompt still prefilling, calls
`llama_decode` once, and samples each branch with its own native sampler chain. A request's prompt is
prefilled once, into the sequence of its first branch; the other branches then share those KV cells
(`llama_memory_seq_cp`) and sample their first token from the same logits. New requests join at the next
step (continuous batching), finished branches leave their cells behind as a cache, and a prompt that starts
with tokens some sequence already holds reuses those cells.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import jinja2
import jinja2.sandbox
import llama_cpp as llama
from pydantic import BaseModel, ConfigDict, Field

from cepo.backends.base import (
    Backend,
    Branch,
    BranchEnd,
    FinishReason,
    GenerationStream,
    Message,
    Prompt,
    Sampling,
    StreamEvent,
    Timings,
    TokenEvent,
)
from cepo.backends.kvcache import KVCache
from cepo.backends.model_files import check_model_file
from cepo.backends.scheduler import Generation, Scheduler
from cepo.backends.stops import StopMatcher
from cepo.backends.weights import cpu_weights
from cepo.errors import GenerationError, ModelError


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: Path | None = Field(None, description="a GGUF file; None: the default SmolLM2-135M-Instruct")
    n_ctx: int = Field(16384, ge=256, description="KV cells shared by all sequences")
    n_seq_max: int = Field(64, ge=1, le=256, description="sequences: live branches plus cached prefixes")
    n_batch: int = Field(2048, ge=32, description="most tokens in one llama_decode call")
    n_ubatch: int = Field(512, ge=32)
    prefill_chunk: int = Field(
        256, ge=1, description="prompt tokens prefilled per step, so live branches keep decoding meanwhile"
    )
    n_threads: int | None = Field(None, ge=1, description="None: one per core")
    reencode_q4_1: bool = Field(
        True, description="on a CPU, load Q4_1 weights as a cached Q8_0 copy, for the faster batched kernels"
    )
    # Flash attention skips the cells a token may not see, which the unified cache is full of when several
    # requests run: 6 requests x 6 branches decoded at 94 tok/s with it, 69 without (AVX-512 Xeon); 16
    # requests of 480-token prompts at 133 against 59 (AVX-512 EPYC). Without it, the branches of one prompt
    # are faster (16 at 274 against 182 tok/s on the EPYC), but that is the rarer load. docs/results.md
    # has the EPYC's figures for every setting here (scripts/engine-defaults.py).
    flash_attn: bool = True
    keep_finished: bool = Field(True, description="keep finished branches' cells for prefix reuse")
    # Attention scans every used cell of the unified cache, masked or not: 13k cached cells cut 8 branches'
    # decoding from 159 to 94 tok/s. So the cache keeps only what is likely to be asked for again soon.
    cache_cells: int = Field(2048, ge=0, description="most cells kept for finished branches' prefixes")
    # For the same reason, a step's cost grows with its branches times the cells in use: past some number
    # of cells, admitting another request slows every branch more than the new branches add.
    busy_cells: int = Field(
        8192, ge=1, description="cells running requests may reserve together before new ones wait"
    )

    @property
    def threads(self) -> int:
        """The threads llama.cpp decodes with: n_threads, or one per core."""
        return self.n_threads or os.cpu_count() or 1

    def weights(self, path: Path) -> Path:
        """The file llama.cpp loads for the model file `path`: its Q8_0 copy where reencode_q4_1 asks."""
        return cpu_weights(path) if self.reencode_q4_1 else path


@dataclass
class EngineLoad:
    """Running totals of the scheduler's work. Subtract two snapshots to see how full a stretch kept it."""

    steps: int = 0
    busy_s: float = 0.0  # seconds spent in steps
    branch_s: float = 0.0  # sum over steps of (branches decoding x the step's seconds)
    tokens: int = 0  # tokens sampled
    prefilled: int = 0  # prompt tokens decoded (those not taken from the cache)

    def since(self, earlier: EngineLoad) -> EngineLoad:
        return EngineLoad(
            self.steps - earlier.steps,
            self.busy_s - earlier.busy_s,
            self.branch_s - earlier.branch_s,
            self.tokens - earlier.tokens,
            self.prefilled - earlier.prefilled,
        )

    def describe(self, wall_s: float) -> str:
        """What a stretch of `wall_s` seconds asked of the engine, in one line."""
        if wall_s <= 0:
            return "engine: no time measured"
        return (
            f"engine: {self.tokens:,} tokens in {wall_s:,.0f} s, {self.tokens / wall_s:.1f} tok/s "
            f"(and {self.prefilled:,} prompt tokens read); "
            f"busy {100 * self.busy_s / wall_s:.0f}% of the time, "
            f"{self.branch_s / wall_s:.1f} branches decoding on average"
        )


class _LlamaMemory:
    """The KV mirror's two calls, on llama.cpp's memory."""

    def __init__(self, ctx: llama.llama_context_p) -> None:
        self._mem = llama.llama_get_memory(ctx)

    def seq_rm(self, seq: int, p0: int, p1: int) -> None:
        llama.llama_memory_seq_rm(self._mem, seq, p0, p1)

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        llama.llama_memory_seq_cp(self._mem, src, dst, p0, p1)


@dataclass(eq=False)
class _Branch:
    index: int
    seq: int
    sampler: llama.llama_sampler_p
    stops: StopMatcher
    utf8: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )
    parts: list[str] = field(default_factory=list)
    generated: int = 0
    pending: int | None = None  # the last sampled token, decoded in the next step
    out_index: int = -1  # where this branch's logits are in the current batch
    cancelled: bool = False
    finished: bool = False
    first_token_at: float = 0.0


def _cancelled_before_start(generation: Generation[_Branch]) -> list[StreamEvent]:
    return [BranchEnd(Branch(i, "", 0, "cancelled")) for i in range(generation.n)]


_init_lock = threading.Lock()
_initialised = False


@llama.llama_log_callback
def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp logs every tensor it loads; cepo reports its own errors instead."""


def _init_llama() -> None:
    global _initialised
    with _init_lock:
        if not _initialised:
            llama.llama_log_set(_quiet_log, ctypes.c_void_p(0))
            llama.llama_backend_init()
            _initialised = True


class LlamaEngine(Backend):
    """One model per process, shared by every caller; see the module docstring for how it batches."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        path = check_model_file(config.model_path)
        self.model_path = path
        _init_llama()
        self.weights_path = weights = config.weights(path)  # the file loaded
        self.model = weights.stem  # names the weights decoded: a re-encoded copy decodes a little differently
        self._model = llama.llama_model_load_from_file(
            str(weights).encode(), llama.llama_model_default_params()
        )
        if not self._model:
            raise ModelError(
                f"llama.cpp could not load {weights}", hint="is the file complete and a supported model?"
            )
        self.threads = threads = config.threads
        params = llama.llama_context_default_params()
        params.n_ctx = config.n_ctx
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_ubatch
        params.n_seq_max = config.n_seq_max
        params.n_threads = params.n_threads_batch = threads
        # One cell buffer for all sequences, so branches share their prompt's cells without copying them.
        # Per-sequence buffers (kv_unified False) spare attention the other requests' cells, but each branch
        # copies a whole buffer and llama.cpp batches only consecutive sequence ids. Measured here: 15-24
        # branches of 5-6 different 1200-1500-token prompts decoded 1.2x faster, 8 branches of one 0.9x.
        params.kv_unified = True
        params.flash_attn_type = (
            llama.LLAMA_FLASH_ATTN_TYPE_ENABLED if config.flash_attn else llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.no_perf = True
        self._ctx = llama.llama_init_from_model(self._model, params)
        if not self._ctx:
            llama.llama_model_free(self._model)
            raise ModelError(
                f"llama.cpp could not create a context of {config.n_ctx} cells for {path.name}",
                hint="lower n_ctx or n_seq_max",
            )
        self._vocab = llama.llama_model_get_vocab(self._model)
        self.n_cells = llama.llama_n_ctx(self._ctx)
        self.max_branch_len = min(self.n_cells, llama.llama_model_n_ctx_train(self._model))
        self.kv = KVCache(_LlamaMemory(self._ctx), self.n_cells, config.n_seq_max)
        self._batch = llama.llama_batch_init(config.n_batch, 0, 1)
        self._template = _chat_template(self._model, self._vocab)
        self._add_bos = llama.llama_vocab_get_add_bos(self._vocab)
        self._bos_text = llama.llama_vocab_get_text(self._vocab, llama.llama_vocab_bos(self._vocab)).decode()
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self._eog_tokens: list[int] | None = None

        self.scheduler: Scheduler[_Branch] = Scheduler(self.kv, config.busy_cells, config.cache_cells)
        # Other threads never change the engine's state: they post work that the scheduler thread runs.
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._closing = threading.Lock()  # clear_cache posts only before close starts: the thread answers it
        self._snapshot = self.scheduler.snapshot()
        self._load = EngineLoad()
        self._thread = threading.Thread(target=self._run, name="cepo-engine", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------------------- public side
    def stream(self, prompt: Prompt, n: int = 1, sampling: Sampling | None = None) -> GenerationStream:
        sampling = sampling or Sampling()
        tokens = self.tokenize_prompt(prompt)
        self._check_fits(len(tokens), n, sampling.max_tokens)
        # The callback is called only after `generation` below exists.
        stream = GenerationStream(
            n, on_cancel=lambda branch: self._post(lambda: self._cancel(generation, branch))
        )
        stream.prompt_tokens = len(tokens)
        generation: Generation[_Branch] = Generation(
            tokens, n, sampling, stream, submitted_at=time.perf_counter()
        )
        self._post(lambda: self.scheduler.submit(generation))
        return stream

    def tokenize_prompt(self, prompt: Prompt) -> list[int]:
        """Chat messages go through the model's chat template; a string is tokenized as it is."""
        text = prompt if isinstance(prompt, str) else self.render_chat(prompt)
        # Add BOS where the model wants one, unless the chat template already wrote it.
        add_bos = self._add_bos and not text.startswith(self._bos_text)
        tokens = self.tokenize(text, add_special=add_bos)
        if not tokens:
            raise GenerationError("empty prompt")
        return tokens

    def render_chat(self, messages: list[Message]) -> str:
        if not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise GenerationError("messages must be a non-empty list of {role, content} strings")
        return self._template.render(messages=messages, add_generation_prompt=True)

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode()
        size = len(data) + 8
        buf = (llama.llama_token * size)()
        count = llama.llama_tokenize(self._vocab, data, len(data), buf, size, add_special, True)
        if count < 0:
            size = -count
            buf = (llama.llama_token * size)()
            count = llama.llama_tokenize(self._vocab, data, len(data), buf, size, add_special, True)
        return list(buf[:count])

    def stats(self) -> dict[str, int]:
        """For metrics: requests waiting and running, live branches, KV cells in use, as the scheduler
        published them at its last step (a scrape reads no state the scheduler thread is changing)."""
        return asdict(self._snapshot)

    def load(self) -> EngineLoad:
        """A snapshot of the running totals (see EngineLoad)."""
        return replace(self._load)

    def clear_cache(self) -> None:
        """Forget every cached prefix (benchmarks and tests want cold prefills); returns once it is done."""
        done = threading.Event()
        with self._closing:
            if self._stopping:
                raise GenerationError("the engine was closed")
            self._post(lambda: self._clear_cache(done))
        done.wait()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._closing:
            if self._stopping:
                return
            self._stopping = True
        with _engines_lock:
            if _engines.get(self.model_path) is self:
                del _engines[self.model_path]  # the next shared_engine() call loads a live one
        self._wake.set()
        self._thread.join()
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)
        llama.llama_model_free(self._model)

    def _check_fits(self, prompt_tokens: int, n: int, max_tokens: int) -> None:
        if n < 1 or n > self.config.n_seq_max:
            raise GenerationError(f"n must be between 1 and {self.config.n_seq_max}, got {n}")
        if prompt_tokens + max_tokens > self.max_branch_len:
            raise GenerationError(
                f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the model's context "
                f"of {self.max_branch_len} tokens"
            )
        if prompt_tokens + n * max_tokens > self.n_cells:
            raise GenerationError(
                f"prompt ({prompt_tokens} tokens) + n ({n}) x max_tokens ({max_tokens}) exceeds the engine's "
                f"{self.n_cells} KV cells",
                hint="lower n or max_tokens, or start the engine with a larger n_ctx",
            )

    def _post(self, work: Callable[[], None]) -> None:
        self._inbox.put(work)
        self._wake.set()

    # ----------------------------------------------------------------------------------- scheduler thread
    def _run(self) -> None:
        while not self._stopping:
            try:
                self._read_inbox()
                self._admit()
                if not self.scheduler.active:
                    self._wake.wait()
                    self._wake.clear()
                    continue
                self._step()
            except Exception as error:  # fail the requests in flight, keep the engine serving
                failed = self.scheduler.active
                for generation in failed:
                    self._drop(generation)
                self.scheduler.retire(failed)
                self._publish()
                for generation in failed:
                    generation.stream.end(GenerationError(f"llama.cpp failed: {error}"))
        self._read_inbox()  # what was posted before close: a clear_cache caller waits for its answer
        for generation in self.scheduler.waiting + self.scheduler.active:
            generation.stream.end(GenerationError("the engine was closed"))

    def _read_inbox(self) -> None:
        while True:
            try:
                work = self._inbox.get_nowait()
            except queue.Empty:
                return
            work()

    def _cancel(self, generation: Generation[_Branch], branch: int | None) -> None:
        if branch is None:
            self.scheduler.cancel_all(generation)
        else:
            generation.cancelled_branches.add(branch)

    def _clear_cache(self, done: threading.Event) -> None:
        self.kv.make_room(self.n_cells, self.config.n_seq_max)
        self._publish()
        done.set()

    def _publish(self) -> None:
        """Replace the stats snapshot whole. Called before callers are told of a change, so that what they
        read once told is settled."""
        self._snapshot = self.scheduler.snapshot()

    def _admit(self) -> None:
        """Start the waiting generations that fit (see Scheduler.admit); end those that never will start."""
        unstarted = self.scheduler.admit()
        if unstarted:
            self._publish()
        for generation, error in unstarted:
            if error is None:
                generation.stream.push(_cancelled_before_start(generation))
            generation.stream.end(error)

    def _step(self) -> None:
        started = time.perf_counter()
        events: dict[int, list[StreamEvent]] = {}
        for generation in self.scheduler.active:
            self._apply_cancels(generation, events.setdefault(id(generation), []))
        batch, count = self._batch, 0
        decoding = [
            b for g in self.scheduler.active if not g.prefilling for b in g.branches if b.pending is not None
        ]
        for branch in decoding:
            count = self._add(batch, count, branch.pending, self._position(branch.seq), branch.seq, True)
            branch.out_index = count - 1
        chunks: list[tuple[Generation[_Branch], list[int], int]] = []
        budget = min(self.config.prefill_chunk, self.config.n_batch - count)
        for generation in self.scheduler.active:
            if budget <= 0:
                break
            if not generation.prefilling or generation.cancel_all:
                continue
            chunk = generation.tokens[generation.prefilled : generation.prefilled + budget]
            done = generation.prefilled + len(chunk) == len(generation.tokens)
            for offset, token in enumerate(chunk):
                last = done and offset == len(chunk) - 1
                count = self._add(
                    batch, count, token, generation.prefilled + offset, generation.seqs[0], last
                )
            chunks.append((generation, chunk, count - 1))
            budget -= len(chunk)
        if count == 0:
            self._finish_generations(events)
            return
        batch.n_tokens = count
        status = llama.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        now = time.perf_counter()
        for branch in decoding:
            self.kv.append(branch.seq, [branch.pending])
        for generation, chunk, out_index in chunks:
            self._load.prefilled += len(chunk)
            self.kv.append(generation.seqs[0], chunk)
            generation.prefilled += len(chunk)
            if not generation.prefilling:
                self._fork(generation, out_index, now, events[id(generation)])
        for generation in self.scheduler.active:
            sink = events[id(generation)]
            for branch in generation.branches:
                if branch.pending is not None and branch.out_index >= 0 and not branch.finished:
                    self._sample(generation, branch, branch.out_index, now, sink)
        seconds = time.perf_counter() - started
        self._load.steps += 1
        self._load.busy_s += seconds
        self._load.branch_s += len(decoding) * seconds
        self._finish_generations(events)

    def _add(self, batch: llama.llama_batch, i: int, token: int, pos: int, seq: int, logits: bool) -> int:
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits
        return i + 1

    def _position(self, seq: int) -> int:
        return len(self.kv.tokens(seq))

    def _fork(
        self, generation: Generation[_Branch], out_index: int, now: float, sink: list[StreamEvent]
    ) -> None:
        """The prompt is in: every branch shares its cells and samples its first token from its logits."""
        generation.prefilled_at = now
        first = generation.seqs[0]
        for index, seq in enumerate(generation.seqs):
            if seq != first:
                self.kv.copy(first, seq)
            seed = generation.sampling.seed
            branch_seed = random.getrandbits(32) if seed is None else (seed + index) & 0xFFFFFFFF
            branch = _Branch(
                index,
                seq,
                self._sampler(generation.sampling, branch_seed),
                StopMatcher(generation.sampling.stop),
            )
            generation.branches.append(branch)
            if generation.cancel_all or index in generation.cancelled_branches:
                self._end_branch(generation, branch, "cancelled", now, sink)
            else:
                self._sample(generation, branch, out_index, now, sink)

    def _sample(
        self,
        generation: Generation[_Branch],
        branch: _Branch,
        out_index: int,
        now: float,
        sink: list[StreamEvent],
    ) -> None:
        token = llama.llama_sampler_sample(branch.sampler, self._ctx, out_index)
        self._load.tokens += 1
        branch.generated += 1
        branch.pending = None
        branch.out_index = -1
        if branch.generated == 1:
            branch.first_token_at = now
        if not generation.sampling.ignore_eos and llama.llama_vocab_is_eog(self._vocab, token):
            self._end_branch(generation, branch, "stop", now, sink)
            return
        text, stopped = branch.stops.feed(branch.utf8.decode(self._piece(token)))
        if text:
            branch.parts.append(text)
            sink.append(TokenEvent(branch.index, text))
        if stopped:
            self._end_branch(generation, branch, "stop", now, sink, flush=False)
        elif branch.generated >= generation.sampling.max_tokens:
            self._end_branch(generation, branch, "length", now, sink)
        else:
            branch.pending = token

    def _end_branch(
        self,
        generation: Generation[_Branch],
        branch: _Branch,
        reason: FinishReason,
        now: float,
        sink: list[StreamEvent],
        flush: bool = True,
    ) -> None:
        if flush:
            tail = branch.stops.flush() + branch.utf8.decode(b"", final=True)
            if tail:
                branch.parts.append(tail)
                sink.append(TokenEvent(branch.index, tail, tokens=0))
        branch.finished = True
        branch.pending = None
        self.scheduler.cells_freed()
        llama.llama_sampler_free(branch.sampler)
        self.kv.release(branch.seq, keep=self.config.keep_finished and reason != "cancelled")
        started = branch.first_token_at or now
        timings = Timings(
            queue_s=generation.admitted_at - generation.submitted_at,
            prefill_s=(generation.prefilled_at or now) - generation.admitted_at,
            first_token_s=started - generation.submitted_at if branch.generated else 0.0,
            decode_s=now - started,
        )
        sink.append(BranchEnd(Branch(branch.index, "".join(branch.parts), branch.generated, reason, timings)))

    def _apply_cancels(self, generation: Generation[_Branch], sink: list[StreamEvent]) -> None:
        if generation.prefilling or not (generation.cancel_all or generation.cancelled_branches):
            return  # nothing to cancel, or no branches yet (_fork ends the cancelled ones)
        now = time.perf_counter()
        for branch in generation.branches:
            if not branch.finished and (
                generation.cancel_all or branch.index in generation.cancelled_branches
            ):
                self._end_branch(generation, branch, "cancelled", now, sink)

    def _finish_generations(self, events: dict[int, list[StreamEvent]]) -> None:
        ended = []
        for generation in self.scheduler.active:
            if generation.cancel_all and generation.prefilling:
                self._drop(generation)
                events[id(generation)] = _cancelled_before_start(generation)
                ended.append(generation)
            elif generation.branches and all(b.finished for b in generation.branches):
                ended.append(generation)
        self.scheduler.retire(ended)
        self._publish()
        for generation in list(self.scheduler.active) + ended:
            if events.get(id(generation)):
                generation.stream.push(events[id(generation)])
        for generation in ended:
            generation.stream.end()

    def _drop(self, generation: Generation[_Branch]) -> None:
        """Free every sequence of a generation that ends before its branches finish (cancel or failure)."""
        self.scheduler.cells_freed()
        for branch in generation.branches:
            if not branch.finished:
                branch.finished = True
                llama.llama_sampler_free(branch.sampler)
        for seq in generation.seqs:
            if self.kv.is_live(seq):
                self.kv.release(seq, keep=False)

    # ---------------------------------------------------------------------------------------- helpers
    def _sampler(self, sampling: Sampling, seed: int) -> llama.llama_sampler_p:
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        if sampling.ignore_eos:
            eog = self._eog()
            biases = (llama.llama_logit_bias * len(eog))(
                *[llama.llama_logit_bias(t, float("-inf")) for t in eog]
            )
            n_vocab = llama.llama_vocab_n_tokens(self._vocab)
            llama.llama_sampler_chain_add(
                chain, llama.llama_sampler_init_logit_bias(n_vocab, len(eog), biases)
            )
        if sampling.temperature == 0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
            return chain
        if sampling.top_k:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_k(sampling.top_k))
        if sampling.top_p < 1:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(sampling.top_p, 1))
        if sampling.min_p > 0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_min_p(sampling.min_p, 1))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(sampling.temperature))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed))
        return chain

    def _eog(self) -> list[int]:
        if self._eog_tokens is None:
            n_vocab = llama.llama_vocab_n_tokens(self._vocab)
            self._eog_tokens = [t for t in range(n_vocab) if llama.llama_vocab_is_eog(self._vocab, t)]
        return self._eog_tokens

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            size = llama.llama_token_to_piece(
                self._vocab, token, self._piece_buf, len(self._piece_buf), 0, False
            )
            if size < 0:
                buf = ctypes.create_string_buffer(-size)
                size = llama.llama_token_to_piece(self._vocab, token, buf, -size, 0, False)
                piece = buf.raw[:size]
            else:
                piece = self._piece_buf.raw[:size]
            self._pieces[token] = piece
        return piece


_engines: dict[Path, LlamaEngine] = {}
_engines_lock = threading.Lock()


def shared_engine(model: str | Path | None = None) -> LlamaEngine:
    """The process's engine for a model file: one load per model, shared by every caller."""
    path = check_model_file(model)
    with _engines_lock:
        if path not in _engines:
            _engines[path] = LlamaEngine(EngineConfig(model_path=path))
        return _engines[path]


def _chat_template(model: llama.llama_model_p, vocab: llama.llama_vocab_p) -> jinja2.Template:
    """The chat template from the GGUF metadata, rendered with Jinja like the model's own tokenizer does."""
    source = llama.llama_model_chat_template(model, None)
    if not source:
        raise ModelError(
            "the model has no chat template", hint="send a plain text prompt instead of messages"
        )

    def raise_exception(message: str) -> None:
        raise GenerationError(f"chat template: {message}")

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    bos, eos = (
        llama.llama_vocab_get_text(vocab, t).decode()
        for t in (llama.llama_vocab_bos(vocab), llama.llama_vocab_eos(vocab))
    )
    return env.from_string(source.decode(), globals={"bos_token": bos, "eos_token": eos})
