"""Structured concurrency, written once: tasks started along the way and joined together, so none
outlives the work that started them, and tasks that nothing awaits, kept alive until they end.

(`asyncio.TaskGroup` raises an ExceptionGroup; every caller here wants the first error itself, since that
is what it catches and reports, and 3.10 has no TaskGroup.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class TaskSet:
    """`spawn` starts a task; `join` waits for every one, including those spawned meanwhile. The first to
    fail has the others cancelled and its error raised; if `join` is cancelled, so are they all."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.append(task)
        return task

    async def join(self) -> None:
        try:
            while pending := [task for task in self._tasks if not task.done()]:
                await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                self._raise_failure()
            self._raise_failure()
        except BaseException:
            await self.cancel()
            raise

    async def cancel(self) -> None:
        """Cancel every task still running and wait until each has ended."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _raise_failure(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


_detached: set[asyncio.Task[Any]] = set()


def detach(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Start a task that reports through something other than its result (a stream it feeds). The event
    loop keeps only weak references to tasks, so it is held here until it ends."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _detached.add(task)
    task.add_done_callback(_detached.discard)
    return task
