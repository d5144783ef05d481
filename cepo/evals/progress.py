"""A rich progress bar per method and setting, with ETA and the accuracy so far."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cepo.evals.results import Record


class RichProgress:
    """Implements the harness's Progress; use it as a context manager around the run."""

    def __init__(self, console: Console | None = None) -> None:
        self._bars = Progress(
            TextColumn("{task.description:<32}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[accuracy]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._tally: dict[str, tuple[int, int]] = {}  # group -> (passed, scored)

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._bars.stop()

    def begin(self, group: str, total: int, done: list[Record]) -> None:
        self._tally[group] = (sum(record.passed for record in done), len(done))
        self._tasks[group] = self._bars.add_task(
            group, total=total, completed=len(done), accuracy=self._accuracy(group)
        )

    def advance(self, group: str, record: Record) -> None:
        passed, scored = self._tally[group]
        self._tally[group] = (passed + record.passed, scored + 1)
        self._bars.update(self._tasks[group], advance=1, accuracy=self._accuracy(group))

    def _accuracy(self, group: str) -> str:
        passed, scored = self._tally[group]
        return f"acc {100 * passed / scored:5.1f}% ({passed}/{scored})" if scored else "acc   -  "
