"""The results file: one JSON line per generation, written durably as it happens, read back to resume.

Each line is flushed and fsynced before the next generation is recorded, so an interruption loses at most
the line being written; reading tolerates that cut-short last line, and the next run drops it and redoes
that generation. One run at a time writes to a file: a second one into the same directory stops at once
rather than repeat generations the first is making.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from pydantic import BaseModel, ValidationError

from cepo.errors import CepoError
from cepo.methods import get_method

RESULTS_NAME = "results.jsonl"

Key = tuple[str, str, str, str, int]  # dataset, problem id, method, settings hash, sample


class Record(BaseModel):
    """One generation: which problem, method and settings; the answer, its score and its cost."""

    dataset: str
    problem: str
    method: str
    settings: dict[str, Any]  # the method's configuration as given with --config ({} for defaults)
    settings_hash: str
    sample: int = 0
    model: str
    answer: str
    candidates: list[Any] = []
    chosen: int | None = None  # which of the candidates gave the answer (None: the method failed)
    passed: bool
    # Per candidate: would its answer have passed, had it been chosen (None: recorded before this was kept).
    candidates_passed: list[bool] | None = None
    detail: str = ""  # why it failed, when it did
    error: str | None = None  # the method itself failed (such as a prompt that can never fit)
    prompt_tokens: int
    completion_tokens: int  # tokens of the branches the method kept
    wasted_tokens: int = 0  # tokens of branches cut by their limit or cancelled: generated all the same
    stages: dict[str, Any] = {}  # tokens and seconds per stage, as the method reports them
    seconds: float

    @property
    def generated_tokens(self) -> int:
        """Every token the model generated for this answer: the compute it cost."""
        return self.completion_tokens + self.wasted_tokens

    @property
    def key(self) -> Key:
        return (self.dataset, self.problem, self.method, self.settings_hash, self.sample)


def settings_hash(config: dict[str, Any], model: str, method: str) -> str:
    """Identifies how `method` ran: a rerun with the same configuration resumes, a different one runs anew.
    `config` is the method's own settings, defaults included, so a changed default of this method is a
    different configuration (another method's is not), and so is another version of the method."""
    canonical = json.dumps(
        {"config": config, "model": model, "methods_version": get_method(method).version},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def settings_label(settings: dict[str, Any]) -> str:
    """A short name for a configuration, for tables and plot labels: `bestofn_n=4 plan.max_tokens=64`."""
    return " ".join(f"{name}={value}" for name, value in sorted(_flat(settings).items())) or "defaults"


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


class ResultsFile:
    """`results.jsonl` in an eval's out directory. Read it with `read`; append inside `with`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RESULTS_NAME
        self._file: BinaryIO | None = None

    def read(self) -> list[Record]:
        """Every complete record; a last line cut short by an interruption is left out."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        records = [self._parse(number, line) for number, line in enumerate(lines[:-1], 1) if line.strip()]
        tail = _complete_tail(lines[-1])
        return records + ([tail] if tail else [])

    def _parse(self, number: int, line: bytes) -> Record:
        try:
            return Record.model_validate_json(line)
        except ValidationError as exc:
            raise CepoError(
                f"{self.path}:{number}: not a result record ({exc.errors()[0]['msg']})",
                hint="the file is damaged there: delete that line, and a rerun redoes its generation",
            ) from exc

    def __enter__(self) -> ResultsFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        file = self.path.open("ab")
        try:
            # Released by the kernel however the process ends, so a killed run never leaves it stale.
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise CepoError(
                f"another `cepo eval` is writing to {self.path}",
                hint="wait for it to finish, or give this run another --out directory",
            ) from None
        if created:
            _fsync_directory(self.path.parent)  # so the new file's name survives a crash too
        self._file = file
        self._drop_cut_short_tail()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, record: Record) -> None:
        assert self._file is not None, "append inside `with results_file:`"
        self._file.write(record.model_dump_json().encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def _drop_cut_short_tail(self) -> None:
        """Make the file end with a newline, so the next record starts a line of its own."""
        assert self._file is not None
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end == len(data):
            return
        if _complete_tail(data[end:]):  # whole record, only its newline lost: keep it
            self._file.write(b"\n")
        else:
            self._file.truncate(end)
        self._file.flush()
        os.fsync(self._file.fileno())


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _complete_tail(line: bytes) -> Record | None:
    if not line.strip():
        return None
    try:
        return Record.model_validate_json(line)
    except ValidationError:
        return None
