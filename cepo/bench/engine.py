"""`cepo bench engine`: the embedded engine's speed, beside llama.cpp's own tools and llama-cpp-python's
high-level `Llama`.

Every figure comes from one run on one model file and thread count, so ratios compare like with like. Ours
and llama.cpp's tools' are taken in rounds that swap which goes first (medians over `repeats`); the
high-level `Llama`'s, after them:
- aggregate decode tok/s for N branches of one prompt (they decode together in one batch), beside
  `llama-batched-bench` at the same prompt length, branch counts and new tokens (`native_ratio_n{N}`);
- prefill tok/s of long prompts, beside `llama-bench -p` at the same sizes;
- single-stream decode and prefill tok/s, ours and the high-level `Llama` on the same prompt and tokens;
- time until every branch has its first token, N = 8 against N = 1 (the prompt is prefilled once).
`llama-batched-bench` samples nothing (it feeds random tokens), so parity with it is a strict bar.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cepo.backends import Sampling
from cepo.backends.llama import EngineConfig, LlamaEngine
from cepo.bench.native import NativeSetup, batched_bench, llama_bench_prefill, peer
from cepo.errors import CepoError

BRANCHES = (1, 2, 4, 8, 16)
PREFILL_SIZES = (512, 2048, 8192)  # 8192: SmolLM2's whole context
# A figure's runs, by branches or by prompt tokens.
Runs = defaultdict[int, list[float]]
# About 500 tokens, like llama-bench's pp512: long enough that prefill speed, not overhead, is measured.
PROMPT = " ".join(
    f"Step {i}: the harbour master logs ship {i}, checks its cargo of grain and timber, and notes the tide."
    for i in range(1, 21)
)


@dataclass
class EngineBench:
    model: str
    threads: int
    decode_tokens: int
    prompt_tokens: int = 0
    ours_decode_tok_s: float = 0.0
    ours_prefill_tok_s: float = 0.0
    llama_decode_tok_s: float = 0.0
    llama_prefill_tok_s: float = 0.0
    aggregate_tok_s: dict[int, float] = field(default_factory=dict)
    first_tokens_s: dict[int, float] = field(default_factory=dict)
    native_tok_s: dict[int, float] = field(default_factory=dict)  # llama-batched-bench, by branches
    long_prefill_tok_s: dict[int, float] = field(default_factory=dict)  # ours, by prompt tokens
    native_prefill_tok_s: dict[int, float] = field(default_factory=dict)  # llama-bench -p, by prompt tokens

    @property
    def single_stream_ratio(self) -> float:
        return self.ours_decode_tok_s / self.llama_decode_tok_s

    @property
    def speedup_n8(self) -> float:
        return self.aggregate_tok_s[8] / self.aggregate_tok_s[1]

    @property
    def prefill_ratio_n8(self) -> float:
        return self.first_tokens_s[8] / self.first_tokens_s[1]

    def native_ratio(self, n: int) -> float:
        """Our aggregate tok/s at `n` branches over llama-batched-bench's."""
        return self.aggregate_tok_s[n] / self.native_tok_s[n]

    def prefill_native_ratio(self, size: int) -> float:
        return self.long_prefill_tok_s[size] / self.native_prefill_tok_s[size]

    def to_json(self) -> dict[str, object]:
        return {
            **asdict(self),
            "single_stream_ratio": self.single_stream_ratio,
            "speedup_n8": self.speedup_n8,
            "prefill_ratio_n8": self.prefill_ratio_n8,
            **{f"native_ratio_n{n}": self.native_ratio(n) for n in self.native_tok_s},
            "prefill_native_ratio": {
                size: self.prefill_native_ratio(size) for size in self.long_prefill_tok_s
            },
        }


def run_engine_bench(
    model: Path | None, tokens: int, repeats: int, prefill_sizes: tuple[int, ...] = PREFILL_SIZES
) -> EngineBench:
    for name in ("llama-batched-bench", "llama-bench"):
        peer(name)  # fail before the engine's minute of work when the tools are not built
    engine = LlamaEngine(EngineConfig(model_path=model))
    try:
        result = EngineBench(model=engine.model, threads=engine.threads, decode_tokens=tokens)
        asyncio.run(_bench_side_by_side(engine, NativeSetup.of(engine), result, repeats, prefill_sizes))
    finally:
        engine.close()
    _bench_high_level(engine.model_path, engine.threads, result, repeats)
    return result


async def _bench_side_by_side(
    engine: LlamaEngine, setup: NativeSetup, result: EngineBench, repeats: int, prefill_sizes: tuple[int, ...]
) -> None:
    """Ours and the tools' figures in rounds, one run of each per round, the side that goes first swapped
    every round, so that a drift of the machine's speed (another tenant, the clock) or an advantage of going
    first reaches both columns alike; the medians are reported. The tools run while the engine is idle:
    its thread waits and takes no CPU."""
    fixed = Sampling(temperature=0, max_tokens=result.decode_tokens, ignore_eos=True)
    await engine.generate(PROMPT, 1, Sampling(max_tokens=4))  # warm up: first-call allocations
    decode: list[float] = []  # one stream on PROMPT
    prefill: list[float] = []
    rates: Runs = defaultdict(list)  # by branches
    first: Runs = defaultdict(list)
    native: Runs = defaultdict(list)
    long_ours: Runs = defaultdict(list)  # by a long prompt's tokens
    long_native: Runs = defaultdict(list)
    long_prompts = (long_prompt(engine, size) for size in prefill_sizes)
    prompts = {len(engine.tokenize_prompt(prompt)): prompt for prompt in long_prompts}
    result.prompt_tokens = len(engine.tokenize_prompt(PROMPT))

    async def our_round() -> None:
        engine.clear_cache()
        completion = await engine.generate(PROMPT, 1, fixed)
        branch = completion.branches[0]
        decode.append((branch.tokens - 1) / branch.timings.decode_s)  # the first token came with the prefill
        prefill.append(completion.prompt_tokens / branch.timings.prefill_s)
        for n in BRANCHES:
            rate, first_s = await aggregate(engine, n, result.decode_tokens)
            rates[n].append(rate)
            first[n].append(first_s)
        for size, prompt in prompts.items():
            long_ours[size].append(await prefill_rate(engine, prompt))

    def tools_round() -> None:
        tool = batched_bench(setup, result.prompt_tokens, result.decode_tokens, list(BRANCHES))
        for n, rate in tool.items():
            native[n].append(rate)
        if prompts:
            for size, rate in llama_bench_prefill(setup, list(prompts), repeats=1).items():
                long_native[size].append(rate)

    for round_ in range(repeats):
        if round_ % 2:
            tools_round()
            await our_round()
        else:
            await our_round()
            tools_round()
    missing = set(BRANCHES) - set(native) or set(prompts) - set(long_native)
    if missing:
        raise CepoError(
            f"llama.cpp's tools reported no figure for {sorted(missing)} (branches, or prompt tokens)",
            hint="fewer --tokens or smaller --prefill sizes fit the context",
        )
    result.ours_decode_tok_s = statistics.median(decode)
    result.ours_prefill_tok_s = statistics.median(prefill)
    result.aggregate_tok_s, result.first_tokens_s, result.native_tok_s = map(_medians, (rates, first, native))
    result.long_prefill_tok_s, result.native_prefill_tok_s = map(_medians, (long_ours, long_native))


def _medians(runs: Runs) -> dict[int, float]:
    return {key: statistics.median(values) for key, values in runs.items()}


async def aggregate(engine: LlamaEngine, n: int, tokens: int) -> tuple[float, float]:
    """Decode tok/s of `n` branches of one prompt decoding together, and the seconds until all have a
    first token, from one run on a cold cache."""
    sampled = Sampling(temperature=0.8, max_tokens=tokens, ignore_eos=True, seed=0)
    engine.clear_cache()
    completion = await engine.generate(PROMPT, n, sampled)
    # All branches fork from one prefill, so the decode phase starts together for them.
    span = max(b.timings.first_token_s + b.timings.decode_s for b in completion.branches) - min(
        b.timings.first_token_s for b in completion.branches
    )
    rate = sum(b.tokens - 1 for b in completion.branches) / span
    return rate, max(b.timings.first_token_s for b in completion.branches)


async def prefill_rate(engine: LlamaEngine, prompt: str) -> float:
    """The engine's prefill tok/s on `prompt` from an empty cache (one run)."""
    engine.clear_cache()
    completion = await engine.generate(prompt, 1, Sampling(temperature=0, max_tokens=1))
    return completion.prompt_tokens / completion.branches[0].timings.prefill_s


def long_prompt(engine: LlamaEngine, size: int) -> str:
    """PROMPT's kind of text, cut at the last word that keeps it within `size` tokens, and within the
    model's context with one token to generate."""
    limit = min(size, engine.max_branch_len - 1)
    steps = (f"Step {i}: the harbour master logs ship {i} and notes the tide." for i in range(limit // 4 + 2))
    words = " ".join(steps).split()  # a step is well over four tokens, so these are more than enough
    low, high = 1, len(words)  # the most words that fit: binary search, since tokenizing is not free
    while low < high:
        middle = (low + high + 1) // 2
        if len(engine.tokenize_prompt(" ".join(words[:middle]))) <= limit:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low])


def _bench_high_level(model_path: Path, threads: int, result: EngineBench, repeats: int) -> None:
    """llama-cpp-python's `Llama` on the same prompt, greedy, the same number of tokens."""
    from llama_cpp import Llama

    llm = Llama(
        str(model_path),
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=True,
        verbose=False,
    )
    tokens = llm.tokenize(PROMPT.encode(), add_bos=False)
    decode, prefill = [], []
    for _ in range(repeats + 1):  # the first pass warms up
        llm.reset()
        started = time.perf_counter()
        llm.eval(tokens)
        prefill.append(len(tokens) / (time.perf_counter() - started))
        llm.reset()
        count, first_at = 0, 0.0
        for _token in llm.generate(tokens, top_k=1, temp=0.0, reset=True):
            count += 1
            if count == 1:
                first_at = time.perf_counter()
            if count == result.decode_tokens:
                break
        decode.append((count - 1) / (time.perf_counter() - first_at))
    result.llama_decode_tok_s = statistics.median(decode[1:])
    result.llama_prefill_tok_s = statistics.median(prefill[1:])
    llm.close()
