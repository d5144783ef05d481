"""`cepo bench engine`: the embedded engine's speed, beside llama-cpp-python's high-level `Llama`.

Every figure comes from one run on one model, so ratios compare like with like:
- single-stream decode and prefill tok/s, ours and the high-level `Llama` on the same prompt and token count;
- aggregate decode tok/s for N branches of one prompt (they decode together in one batch);
- time until every branch has its first token, N = 8 against N = 1 (the prompt is prefilled once).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cepo.backends import Sampling
from cepo.backends.llama import EngineConfig, LlamaEngine

# llama.cpp's own tools on the development machine (2 threads, SmolLM2-135M Q4_1, same portable build flags).
REFERENCE = {
    "decode_tok_s": 95.0,
    "prefill_tok_s": 290.0,
    "aggregate_tok_s_n1": 86.0,
    "aggregate_tok_s_n8": 185.0,
}
BRANCHES = (1, 2, 4, 8, 16)
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
    reference: dict[str, float] = field(default_factory=lambda: dict(REFERENCE))

    @property
    def single_stream_ratio(self) -> float:
        return self.ours_decode_tok_s / self.llama_decode_tok_s

    @property
    def speedup_n8(self) -> float:
        return self.aggregate_tok_s[8] / self.aggregate_tok_s[1]

    @property
    def prefill_ratio_n8(self) -> float:
        return self.first_tokens_s[8] / self.first_tokens_s[1]

    def to_json(self) -> dict[str, object]:
        return {
            **asdict(self),
            "single_stream_ratio": self.single_stream_ratio,
            "speedup_n8": self.speedup_n8,
            "prefill_ratio_n8": self.prefill_ratio_n8,
            "decode_vs_reference": self.ours_decode_tok_s / REFERENCE["decode_tok_s"],
            "aggregate_n8_vs_reference": self.aggregate_tok_s[8] / REFERENCE["aggregate_tok_s_n8"],
        }


def run_engine_bench(model: Path | None, tokens: int, repeats: int) -> EngineBench:
    engine = LlamaEngine(EngineConfig(model_path=model))
    try:
        result = EngineBench(model=engine.model, threads=engine.threads, decode_tokens=tokens)
        asyncio.run(_bench_ours(engine, result, repeats))
    finally:
        engine.close()
    _bench_high_level(engine.model_path, engine.threads, result, repeats)
    return result


async def _bench_ours(engine: LlamaEngine, result: EngineBench, repeats: int) -> None:
    fixed = Sampling(temperature=0, max_tokens=result.decode_tokens, ignore_eos=True)
    await engine.generate(PROMPT, 1, Sampling(max_tokens=4))  # warm up: first-call allocations
    decode, prefill = [], []
    for _ in range(repeats):
        engine.clear_cache()
        completion = await engine.generate(PROMPT, 1, fixed)
        branch = completion.branches[0]
        decode.append((branch.tokens - 1) / branch.timings.decode_s)  # the first token came with the prefill
        prefill.append(completion.prompt_tokens / branch.timings.prefill_s)
        result.prompt_tokens = completion.prompt_tokens
    result.ours_decode_tok_s = statistics.median(decode)
    result.ours_prefill_tok_s = statistics.median(prefill)
    for n in BRANCHES:
        result.aggregate_tok_s[n], result.first_tokens_s[n] = await aggregate(
            engine, n, result.decode_tokens, repeats
        )


async def aggregate(engine: LlamaEngine, n: int, tokens: int, repeats: int) -> tuple[float, float]:
    """Decode tok/s of `n` branches of one prompt decoding together, and the seconds until all have a
    first token (medians over `repeats` cold runs)."""
    sampled = Sampling(temperature=0.8, max_tokens=tokens, ignore_eos=True, seed=0)
    rates, first = [], []
    for _ in range(repeats):
        engine.clear_cache()
        completion = await engine.generate(PROMPT, n, sampled)
        # All branches fork from one prefill, so the decode phase starts together for them.
        span = max(b.timings.first_token_s + b.timings.decode_s for b in completion.branches) - min(
            b.timings.first_token_s for b in completion.branches
        )
        rates.append(sum(b.tokens - 1 for b in completion.branches) / span)
        first.append(max(b.timings.first_token_s for b in completion.branches))
    return statistics.median(rates), statistics.median(first)


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
