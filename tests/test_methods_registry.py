"""A method is one declaration: a toy method defined in this file alone is served over HTTP (streamed and
not), shows in the transcript under its own stage title, and runs through the eval harness, keyed by its
own settings."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from live_server import live_server
from scripted_backend import ScriptedBackend

from cepo.evals.harness import EvalPlan, run_eval
from cepo.evals.letters import Letters
from cepo.evals.results import ResultsFile
from cepo.methods import METHODS, register, solve
from cepo.methods.context import Lane, RunContext
from cepo.methods.events import Candidate, MethodResult
from cepo.methods.method import Method
from cepo.methods.settings import RunSettings, StepConfig

ANSWER = "Answer: 3"


class EchoSettings(RunSettings):
    shout: bool = False
    reply: StepConfig = StepConfig(temperature=0.0, max_tokens=32)


async def echo(ctx: RunContext[EchoSettings]) -> MethodResult:
    """echo: the model's one reply, in capitals when told to shout."""
    [reply] = await ctx.ask("echo", ctx.messages, ctx.config.reply, [Lane(0, 0)])
    text = reply.text.upper() if ctx.config.shout else reply.text
    checks = await ctx.check(0, [text], run=False)
    return ctx.result("echo", [Candidate(index=0, final=text, checks=checks)], chosen=0, agreed=True)


ECHO = Method(
    name="echo",
    version=1,
    run=echo,
    settings=EchoSettings,
    answer_stage="echo",
    answer_step="reply",
    stage_titles={"echo": "Echo"},
)


@pytest.fixture
def registered() -> Iterator[Method]:
    yield register(ECHO)
    del METHODS[ECHO.name]  # the registration ends with the test


@pytest.fixture
def url(registered: Method) -> Iterator[str]:
    with live_server(ScriptedBackend([], default=ANSWER.lower())) as url:
        yield url


def test_the_server_lists_and_serves_the_toy_method(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    assert "echo" in [model.id for model in client.models.list().data]

    reply = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "How many r's in strawberry?"}],
        max_tokens=8,
        extra_body={"cepo": {"shout": True}, "include_reasoning": True},
    )
    message = reply.choices[0].message
    assert message.content == ANSWER.upper()
    assert (message.model_extra or {})["reasoning_content"].startswith("[Echo · candidate 1]\nanswer: 3")
    assert reply.usage is not None and reply.usage.completion_tokens == 2


def test_a_request_setting_no_method_has_names_itself(url: str) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "cepo": {"whisper": True}}
    response = httpx.post(f"{url}/v1/chat/completions", content=json.dumps(body), timeout=30)
    assert response.status_code == 400 and "whisper: unknown setting" in response.text


async def test_the_eval_harness_runs_the_toy_method_keyed_by_its_own_settings(
    registered: Method, tmp_path: object
) -> None:
    problems = Letters().load(None, "stop").problems[:2]
    backend = ScriptedBackend([], default="Answer: 1")
    results = ResultsFile(tmp_path)  # type: ignore[arg-type]
    # A cepo setting in the sweep does not touch echo's settings: echo runs once per problem.
    sweep = EvalPlan(Letters(), problems, ["echo"], settings=[{"bestofn_n": 2}, {"bestofn_n": 4}])
    records = await run_eval(sweep, backend=backend, solve=solve, results=results)

    assert [record.method for record in records] == ["echo", "echo"]
    assert all(record.settings == {} and record.completion_tokens == 2 for record in records)
    shouted = EvalPlan(Letters(), problems, ["echo"], settings=[{"shout": True}])
    again = await run_eval(shouted, backend=backend, solve=solve, results=results)
    assert len(again) == 2 and {r.settings_hash for r in again}.isdisjoint(r.settings_hash for r in records)
