"""A Q4_1 model is re-encoded once as Q8_0 for the CPU's batched kernels; other files load as they are."""

from __future__ import annotations

import asyncio
from pathlib import Path

import llama_cpp as llama
import pytest

from cepo.backends.base import Sampling
from cepo.backends.llama import EngineConfig, LlamaEngine
from cepo.backends.model_files import check_model_file
from cepo.backends.weights import _file_type, cpu_weights


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "cepo" / "models"


def test_a_q4_1_model_is_re_encoded_as_q8_0_once_and_the_copy_reused(cache: Path) -> None:
    source = check_model_file(None)
    assert _file_type(source) == llama.LLAMA_FTYPE_MOSTLY_Q4_1
    copy = cpu_weights(source)
    assert copy.parent.parent == cache and copy.name == "SmolLM2-135M-Instruct.Q4_1.q8_0.gguf"
    assert _file_type(copy) == llama.LLAMA_FTYPE_MOSTLY_Q8_0
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no partial file left behind
    made = copy.stat().st_mtime_ns
    assert cpu_weights(source) == copy and copy.stat().st_mtime_ns == made
    assert cpu_weights(copy) == copy  # not Q4_1: loaded as it is


def test_the_engine_names_the_weights_it_decodes_and_can_load_the_file_as_it_is(cache: Path) -> None:
    engine = LlamaEngine(EngineConfig(reencode_q4_1=False))
    try:
        assert engine.model == "SmolLM2-135M-Instruct.Q4_1"
        completion = asyncio.run(
            engine.generate("The capital of France is", sampling=Sampling(max_tokens=4, ignore_eos=True))
        )
        assert completion.branches[0].tokens == 4
    finally:
        engine.close()
    assert not cache.exists()  # nothing was re-encoded
