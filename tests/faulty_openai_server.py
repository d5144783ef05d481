"""tests/fake_openai_server.py's server, with faults scripted per request for fault-injection tests.

`fail(fault, times, matching)`: the next `times` completion requests (None: all) whose last message
matches the regex `matching` meet `fault` instead of the normal answer. Rules apply in the order given;
a request that no rule takes is answered normally. A fault that streams first sends `after` chunks of the
normal answer (role-less deltas, one word each).

Run as a script, it serves in the foreground, meets every request with the fault named on the command
line and prints its base URL, for tests that kill it: `python tests/faulty_openai_server.py stall`.
"""

from __future__ import annotations

import argparse
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from fake_openai_server import FakeOpenAIServer
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

FaultKind = Literal["status", "hang", "stall", "cut", "drop", "malformed", "choices"]
FAULT_KINDS: tuple[FaultKind, ...] = ("status", "hang", "stall", "cut", "drop", "malformed", "choices")


@dataclass(frozen=True)
class Fault:
    """status: an error response; hang: no response at all; stall: `after` chunks, then silence; cut:
    `after` chunks, then a clean end with no finish reason and no [DONE]; drop: `after` chunks, then the
    connection breaks; malformed: `after` chunks, then `event` (by default not JSON) and the end; choices:
    `choices` choices streamed, whatever `n` asked. hang and stall last until the server is released."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None  # status: the Retry-After header, in seconds
    after: int = 1
    choices: int = 1
    event: str = 'data: {"choices": [{"index": 0, "delta": {"content": "cut\n\n'  # malformed


class DroppedConnection(Exception):
    """Raised inside a response body: uvicorn then closes the connection mid-body."""


@dataclass
class _Rule:
    fault: Fault
    left: int | None
    matching: str


class FaultyOpenAIServer(FakeOpenAIServer):
    def __init__(self) -> None:
        super().__init__()
        self._rules: list[_Rule] = []

    def fail(self, fault: Fault, times: int | None = 1, matching: str = "") -> None:
        self._rules.append(_Rule(fault, times, matching))

    def reset(self) -> None:
        super().reset()
        self._rules.clear()

    def _take(self, body: dict[str, Any]) -> Fault | None:
        last = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        for rule in self._rules:
            if rule.left != 0 and re.search(rule.matching, last):
                if rule.left is not None:
                    rule.left -= 1
                return rule.fault
        return None

    async def _complete(self, request: Request, chat: bool) -> Response:
        body = await request.json()  # cached: the normal answer reads it again
        fault = self._take(body)
        if fault is None:
            return await super()._complete(request, chat)
        self.requests.append(body)
        self.paths.append(request.url.path)
        release = self._release
        if fault.kind == "status":
            headers = {"retry-after": fault.retry_after} if fault.retry_after else None
            message = {"error": {"message": f"injected {fault.status}", "type": "server_error"}}
            return JSONResponse(message, status_code=fault.status, headers=headers)
        if fault.kind == "hang":
            await release.wait()
            return Response(status_code=503)
        n = fault.choices if fault.kind == "choices" else body.get("n", 1)
        answer = self._stream(body, n, chat, self.behaviour, release)
        return StreamingResponse(self._faulty(answer, fault, release), media_type="text/event-stream")

    async def _faulty(self, answer: AsyncIterator[str], fault: Fault, release: Any) -> AsyncIterator[str]:
        if fault.kind == "choices":
            async for event in answer:
                yield event
            return
        sent = 0
        async for event in answer:
            if sent == fault.after:
                break
            yield event
            sent += 1
        await answer.aclose()  # type: ignore[attr-defined]
        if fault.kind == "stall":
            await release.wait()
        elif fault.kind == "drop":
            raise DroppedConnection("the test asked for a dropped connection")
        elif fault.kind == "malformed":
            yield fault.event


def faulty_server() -> Iterator[FaultyOpenAIServer]:
    """Start a server, yield it, stop it: the body of a pytest fixture."""
    server = FaultyOpenAIServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("fault", choices=FAULT_KINDS)
    parser.add_argument("--after", type=int, default=1)
    args = parser.parse_args()
    server = FaultyOpenAIServer()
    server.fail(Fault(args.fault, after=args.after), times=None)
    server.start()
    print(server.base_url, flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
