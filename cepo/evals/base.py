"""What every dataset provides: problems to pose, and a way to score an answer to one of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from cepo.backends import Message
from cepo.checks.examples import Example
from cepo.errors import CepoError
from cepo.methods.settings import TaskSetting

BadLinePolicy = Literal["skip", "stop"]


class BadDataError(CepoError):
    """A dataset file has a line that cannot be read as a problem; the message names file and line."""


class Problem(BaseModel):
    """One question, as the method sees it; datasets subclass it with what their scoring needs."""

    id: str
    messages: list[Message]
    tests: list[Example] = []  # public examples the method may run; never the tests that score it


class Verdict(BaseModel):
    """Whether an answer passed, and a short reason a person can read when it did not."""

    passed: bool
    detail: str = ""


class Loaded(BaseModel):
    """The problems read from a dataset, and one message per line skipped as bad."""

    problems: list[Problem]
    skipped: list[str] = []


class Dataset(ABC):
    """A named benchmark: loads its problems and scores answers to them."""

    name: str
    needs_path: bool = False  # True when the problems come from a file given with --path
    # The kind of answer its questions want, told to the methods unless --config sets `task` itself:
    # guessing it from the question can go wrong (a CRUXEval prompt reads like a coding request).
    task: TaskSetting = "auto"

    @abstractmethod
    def load(self, path: Path | None, on_bad_line: BadLinePolicy) -> Loaded:
        """Read (or generate) every problem; bad lines are skipped or raise BadDataError, by policy."""

    @abstractmethod
    async def score(self, problem: Problem, answer: str) -> Verdict:
        """Score the method's final answer to `problem` (loaded by this dataset)."""
