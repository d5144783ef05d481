"""Backends: the embedded llama.cpp engine and remote OpenAI-compatible servers, behind one interface."""

from pathlib import Path

from cepo.backends.base import (
    Backend,
    Branch,
    BranchEnd,
    Completion,
    GenerationStream,
    Message,
    Prompt,
    Sampling,
    StreamEvent,
    Timings,
    TokenEvent,
)

__all__ = [
    "Backend",
    "Branch",
    "BranchEnd",
    "Completion",
    "GenerationStream",
    "Message",
    "Prompt",
    "Sampling",
    "StreamEvent",
    "Timings",
    "TokenEvent",
    "open_backend",
]


def open_backend(
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    model_name: str | None = None,
    timeout: float | None = None,
    threads: int | None = None,
) -> Backend:
    """The backend a user asked for: a remote server when `base_url` is set (`timeout`: the seconds it
    may stay silent, per attempt), else the embedded engine on `model` (a GGUF path; None for the default
    SmolLM2). Engines are shared per model file, unless `threads` asks for an engine of its own."""
    if base_url:
        from cepo.backends.remote import RemoteBackend

        given = {} if timeout is None else {"timeout": timeout}
        return RemoteBackend(base_url, model=model_name or model or "default", api_key=api_key, **given)
    from cepo.backends.llama import EngineConfig, LlamaEngine, shared_engine

    if threads is not None:
        path = None if model is None else Path(model)
        return LlamaEngine(EngineConfig(model_path=path, n_threads=threads))
    return shared_engine(model)
