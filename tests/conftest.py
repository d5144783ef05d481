"""Shared fixtures. The real model is loaded once per test session: loading it costs seconds, a test less."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cepo.backends.llama import EngineConfig, LlamaEngine
from cepo.sandbox import IsolationReport, isolation_report


@pytest.fixture(scope="session")
def engine() -> Iterator[LlamaEngine]:
    """The embedded engine on the default SmolLM2-135M-Instruct model."""
    engine = LlamaEngine(EngineConfig(n_ctx=8192))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def isolation() -> IsolationReport:
    """What the sandbox can enforce on this machine."""
    return isolation_report()


@pytest.fixture
def separate_user(isolation: IsolationReport) -> None:
    if not isolation.separate_user:
        pytest.skip("runs do not get a uid of their own here: " + "; ".join(isolation.not_enforced))


@pytest.fixture
def namespaces(isolation: IsolationReport) -> None:
    if not isolation.namespaces:
        pytest.skip("no namespaces here: " + "; ".join(isolation.not_enforced))
