"""Weights for the CPU's batched kernels: a Q4_1 model is re-encoded once as Q8_0, and the copy cached.

On a CPU, llama.cpp multiplies many tokens at once (a batch of branches, a prompt) with fast kernels for
Q8_0 weights but not for Q4_1. Each Q4_1 block (32 weights, w = d*q + m with q in 0..15) becomes a Q8_0
block of the same 32 weights, every one within 1/254 of the block's largest magnitude: a few percent of a
Q4_1 step. Measured on SmolLM2-135M with 2 threads: 8 branches decoded 25% faster, prompts prefilled 1.6x
faster and one branch 10% slower; over 3,000 tokens of text the mean next-token loss was unchanged
(3.568 both), the most likely next token the same at 94% of positions.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from pathlib import Path

import llama_cpp as llama

from cepo.errors import ModelError


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "cepo" / "models"


def cpu_weights(path: Path) -> Path:
    """The file to load for `path`: its Q8_0 copy if it holds Q4_1 weights and runs on a CPU, else itself."""
    if llama.llama_supports_gpu_offload() or _file_type(path) != llama.LLAMA_FTYPE_MOSTLY_Q4_1:
        return path
    stat = path.stat()
    # A changed source file gets a new copy: the folder is named after its path, size and modification time.
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    copy = _cache_dir() / key / f"{path.stem}.q8_0.gguf"
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_name(f"{copy.name}.{os.getpid()}.partial")  # never a half-written copy in place
        params = llama.llama_model_quantize_default_params()
        params.ftype = llama.LLAMA_FTYPE_MOSTLY_Q8_0
        params.allow_requantize = True
        params.nthread = os.cpu_count() or 1
        if llama.llama_model_quantize(str(path).encode(), str(partial).encode(), ctypes.byref(params)):
            partial.unlink(missing_ok=True)
            raise ModelError(
                f"llama.cpp could not re-encode {path.name} as Q8_0", hint="turn reencode_q4_1 off"
            )
        partial.replace(copy)
    return copy


def _file_type(path: Path) -> int | None:
    """The `general.file_type` the GGUF header declares (a LLAMA_FTYPE_* value), read without the weights."""
    params = llama.llama_model_default_params()
    params.vocab_only = True
    model = llama.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        return None  # the full load that follows reports the error
    try:
        value = ctypes.create_string_buffer(32)
        found = llama.llama_model_meta_val_str(model, b"general.file_type", value, len(value)) >= 0
        return int(value.value) if found and value.value.isdigit() else None
    finally:
        llama.llama_model_free(model)
