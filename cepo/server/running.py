"""A chat run going on for one HTTP request: in its own task, holding its admission slot, its outputs queued
for the response; cancelled the moment the client disconnects, which stops every branch it decodes.

The same object serves streaming and non-streaming replies, and books the request in the metrics once
it is over, whichever way it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.requests import Request

from cepo.errors import BackendUnavailable, CepoError
from cepo.server.admission import Ticket
from cepo.server.chat_run import ChatRun
from cepo.server.choices import Ended, Output, shows_text
from cepo.server.errors import ApiError, from_cepo_error
from cepo.server.metrics import Metrics
from cepo.server.schemas import Usage

log = logging.getLogger("cepo.server")
CLIENT_GONE = 499  # nginx's status for a request its client closed


class RunningChat:
    def __init__(
        self, chat: ChatRun, ticket: Ticket, request: Request, metrics: Metrics, started: float
    ) -> None:
        self.chat, self.metrics, self.started = chat, metrics, started
        self.usage = Usage()
        self.status = 200
        self._ticket = ticket
        self._outputs: asyncio.Queue[Output | ApiError | None] = asyncio.Queue()
        self._first_text = True
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        self._watcher = loop.create_task(self._cancel_on_disconnect(request))

    async def next(self) -> Output | None:
        """The next output; None once the run is over (and at every call after). Raises the ApiError the
        run failed with."""
        item = await self._outputs.get()
        if isinstance(item, ApiError):
            raise item
        if item is None:
            self._outputs.put_nowait(None)
        return item

    async def cancel(self) -> None:
        """Stop the run (if still running) and wait until its branches are cancelled."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            async with self._ticket:
                async for output in self.chat.outputs():
                    self._observe(output)
                    self._outputs.put_nowait(output)
        except asyncio.CancelledError:
            self.status = CLIENT_GONE
            raise
        except CepoError as error:
            if isinstance(error, BackendUnavailable):  # the operator's to fix, not the client's
                log.warning("a %s run failed in the backend: %s", self.chat.method.name, error)
            self._fail(from_cepo_error(error))
        except Exception:
            log.exception("a %s run failed", self.chat.method.name)
            self._fail(ApiError(500, "the method failed; the server log has the details"))
        finally:
            self._ticket.cancel()
            self._watcher.cancel()
            self._outputs.put_nowait(None)
            seconds = time.perf_counter() - self.started
            self.metrics.finished(self.chat.method.name, self.status, seconds, self.usage)

    def _observe(self, output: Output) -> None:
        if shows_text(output) and self._first_text:
            self._first_text = False
            self.metrics.first_token.labels(self.chat.method.name).observe(time.perf_counter() - self.started)
        elif isinstance(output, Ended):
            self.usage += output.usage

    def _fail(self, error: ApiError) -> None:
        self.status = error.status
        self._outputs.put_nowait(error)

    async def _cancel_on_disconnect(self, request: Request) -> None:
        # The body has been read, so the next message the server has for us is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        self._task.cancel()
