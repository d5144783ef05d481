"""`cepo bench peers` with fakes: the settings handed to optillm, the figures and ratios, the ways' turns,
failures, token counts, and the servers it starts and stops. No model and no tools, except in the one
test that runs the real llama-server where `make bench-tools` has built it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner
from fake_openai_server import FakeOpenAIServer, running_server
from rich.progress import Progress
from scripted_backend import ScriptedBackend
from test_methods_bench import SCRIPT

from cepo.bench import native, peers, servers
from cepo.bench.native import NativeSetup, ToolMissing, peer
from cepo.bench.peers import (
    EMBEDDED,
    OPTILLM,
    REMOTE,
    SERVER,
    Outcome,
    PeerFigures,
    Way,
    WayFigures,
    answer,
    bench_peers,
    cepo_way,
    chat_way,
    optillm_settings,
    peers_table,
    percentile,
    plain_params,
)
from cepo.cli import main
from cepo.cli.bench import save_figures
from cepo.errors import CepoError
from cepo.evals.base import Dataset, Loaded, Problem, Verdict
from cepo.methods.cepo_method import CepoSettings

# optillm 0.4.0's CepoConfig fields: every name handed to it must be one of them.
OPTILLM_FIELDS = {
    "bestofn_n",
    "bestofn_temperature",
    "bestofn_max_tokens",
    "bestofn_rating_type",
    "planning_n",
    "planning_m",
    "planning_temperature_step1",
    "planning_temperature_step2",
    "planning_temperature_direct_resp",
    "planning_temperature_step3",
    "planning_temperature_step4",
    "planning_max_tokens_step1",
    "planning_max_tokens_step2",
    "planning_max_tokens_direct_resp",
    "planning_max_tokens_step3",
    "planning_max_tokens_step4",
    "use_plan_diversity",
    "use_reasoning",
    "use_reasoning_fallback",
    "num_of_retries",
    "rating_model",
    "print_output",
}


def test_optillm_gets_cepos_token_limits_and_counts_by_its_own_names() -> None:
    defaults = CepoSettings()
    settings = optillm_settings(defaults)

    assert set(settings) <= OPTILLM_FIELDS
    assert settings == {
        "bestofn_n": 3,
        "planning_n": 1,
        "planning_m": 2,
        "bestofn_max_tokens": defaults.rating.max_tokens,
        "planning_max_tokens_step1": defaults.plan.max_tokens,
        "planning_max_tokens_step2": defaults.execute.max_tokens,
        "planning_max_tokens_step3": defaults.refine.max_tokens,
        "planning_max_tokens_step4": defaults.final.max_tokens,
        "planning_max_tokens_direct_resp": defaults.sample.max_tokens,
    }
    smaller = optillm_settings(defaults.merged({"plan": {"max_tokens": 16}, "bestofn_n": 1}))
    assert smaller["planning_max_tokens_step1"] == 16 and smaller["bestofn_n"] == 1


def test_plain_answers_sample_as_cepos_plain_method() -> None:
    assert plain_params({}) == {"temperature": 0.7, "max_tokens": 256}
    assert plain_params({"sample": {"max_tokens": 8}})["max_tokens"] == 8


def test_percentile_is_linear_between_ranks() -> None:
    assert percentile([float(x) for x in range(1, 11)], 0.9) == pytest.approx(9.1)
    assert percentile([3.0], 0.9) == 3.0


def way_figures(name: str, seconds: list[float], tokens: int, failed: int = 0) -> WayFigures:
    outcomes = [Outcome(s, s / 10, tokens // len(seconds), passed=i % 2 == 0) for i, s in enumerate(seconds)]
    outcomes += [Outcome(1.0, None, 0, False, "broken") for _ in range(failed)]
    return WayFigures(name, outcomes)


def test_figures_per_way_and_the_ratios() -> None:
    ways = {
        SERVER: way_figures(SERVER, [1.0, 2.0, 3.0], 300),
        OPTILLM: way_figures(OPTILLM, [30.0, 40.0], 4000, failed=1),
        EMBEDDED: way_figures(EMBEDDED, [5.0, 10.0, 15.0], 1500),
        REMOTE: way_figures(REMOTE, [10.0, 20.0, 30.0], 1500),
    }
    figures = PeerFigures("m", 2, ["q1", "q2", "q3"], ways)

    optillm = ways[OPTILLM]
    assert (optillm.median_s, optillm.failed, optillm.tokens) == (30.0, 1, 4000)
    assert optillm.accuracy == pytest.approx(1 / 3)  # a failed request scores as wrong
    assert optillm.first_byte_s == 3.5  # the median of those that streamed anything
    figures_json = figures.to_json()
    assert figures_json["speedup_vs_optillm"] == 30.0 / 10.0
    assert figures_json["tokens_vs_optillm"] == 4000 / 1500
    assert figures_json["remote_speedup_vs_optillm"] == 30.0 / 20.0
    assert figures_json["embedded_vs_remote"] == 2.0
    assert figures_json["ways"][OPTILLM]["failed"] == 1 and figures_json["ways"][OPTILLM]["errors"] == [
        "broken"
    ]
    assert {way["accuracy"] for way in figures_json["ways"].values()} == {2 / 3, 1 / 3}
    assert [o["passed"] for o in figures_json["ways"][OPTILLM]["outcomes"]] == [True, False, False]
    assert figures_json["ways"][OPTILLM]["outcomes"][2]["error"] == "broken"
    assert peers_table(figures).row_count == 4


class Exact(Dataset):
    """Passes the answer "right"."""

    name = "exact"

    def load(self, path: Path | None, on_bad_line: str) -> Loaded:
        return Loaded(
            problems=[Problem(id=f"q{i}", messages=[{"role": "user", "content": "?"}]) for i in range(3)]
        )

    async def score(self, problem: Problem, answer: str) -> Verdict:
        return Verdict(passed=answer == "right")


class Counter:
    """A way's generated-token count, which each of its answers raises."""

    def __init__(self) -> None:
        self.tokens = 0

    async def __call__(self) -> int:
        return self.tokens


def fake_way(name: str, order: list[str], reply: str | Exception = "right", tokens: int = 10) -> Way:
    counter = Counter()

    async def ask(problem: Problem, dataset: Dataset) -> tuple[str, float | None]:
        order.append(f"{name}:{problem.id}")
        counter.tokens += tokens
        if isinstance(reply, Exception):
            raise reply
        return reply, 0.01

    return Way(name, ask, counter)


async def test_the_ways_take_turns_and_the_first_rotates() -> None:
    dataset = Exact()
    questions = [(dataset, problem) for problem in dataset.load(None, "stop").problems]
    order: list[str] = []
    ways = [fake_way("a", order), fake_way("b", order, "wrong"), fake_way("c", order, CepoError("down"))]
    with Progress(disable=True) as progress:
        figures = await bench_peers(ways, questions, "m", 2, progress)

    assert order == ["a:q0", "b:q0", "c:q0", "b:q1", "c:q1", "a:q1", "c:q2", "a:q2", "b:q2"]
    a, b, c = figures.ways.values()
    assert (a.accuracy, b.accuracy, c.accuracy) == (1.0, 0.0, 0.0)
    assert (a.tokens, c.failed, c.first_byte_s) == (30, 3, None)
    assert c.outcomes[0].error == "q0: down"


async def test_the_figures_so_far_are_handed_on_after_each_question() -> None:
    dataset = Exact()
    questions = [(dataset, problem) for problem in dataset.load(None, "stop").problems]
    names = [SERVER, OPTILLM, EMBEDDED, REMOTE]
    seen: list[dict[str, int]] = []

    def answered(figures: PeerFigures) -> None:
        seen.append({name: len(way.outcomes) for name, way in figures.ways.items()})
        figures.to_json()  # every way has an outcome for each question so far: the figures can be written

    with Progress(disable=True) as progress:
        await bench_peers([fake_way(name, []) for name in names], questions, "m", 2, progress, answered)

    assert seen == [dict.fromkeys(names, n) for n in (1, 2, 3)]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAIServer]:
    yield from running_server()


@pytest.fixture
def server(fake_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    yield fake_server
    fake_server.reset()


def letters_question() -> tuple[Dataset, Problem]:
    dataset = Exact()
    return dataset, Problem(id="q", messages=[{"role": "user", "content": "How many r's in strawberry?"}])


async def test_a_chat_way_streams_the_servers_answer(server: FakeOpenAIServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="-", max_retries=0)
    server.behaviour.replies = ["right"]
    way = chat_way(SERVER, client, "fake-model", {"max_tokens": 5}, Counter())
    dataset, problem = letters_question()

    outcome = await answer(way, problem, dataset)

    assert outcome.passed and outcome.error is None and 0 < outcome.first_byte_s <= outcome.seconds
    assert server.requests[0]["max_tokens"] == 5 and server.requests[0]["stream"] is True
    server.behaviour.failures = [500]
    failed = await answer(way, problem, dataset)
    assert not failed.passed and failed.first_byte_s is None
    assert failed.error is not None and "500" in failed.error and "something went wrong" in failed.error
    await client.close()


async def test_a_cepo_way_runs_cepo_and_times_its_first_token() -> None:
    backend = ScriptedBackend(SCRIPT)
    dataset, problem = letters_question()
    way = cepo_way(EMBEDDED, backend, {"bestofn_n": 1}, Counter())

    text, first = await way.ask(problem, dataset)

    assert text == "3" and first is not None
    assert max(call.n for call in backend.calls) == 1  # one candidate: one plan, then its execution


def test_a_server_is_up_in_its_block_and_stopped_after(tmp_path: Path) -> None:
    port = servers.free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", servers.HOST]
    url = f"http://{servers.HOST}:{port}/"
    with servers.serving("http.server", command, url, tmp_path / "log"):
        assert httpx.get(url).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_a_server_that_exits_on_start_shows_its_last_lines(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('loading'); print('error: no such model'); raise SystemExit(3)"]
    with (
        pytest.raises(CepoError, match="exited with status 3 on start: loading / error: no such model"),
        servers.serving("fake", command, "http://127.0.0.1:9/health", tmp_path / "log"),
    ):
        pass


def test_metrics_are_read_by_name() -> None:
    text = (
        "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.\n"
        "# TYPE llamacpp:tokens_predicted_total counter\n"
        "llamacpp:tokens_predicted_total 1234\n"
        "llamacpp:requests_processing 0\n"
    )
    assert servers.parse_metrics(text) == {servers.TOKENS_METRIC: 1234.0, servers.BUSY_METRIC: 0.0}


def test_bench_peers_without_the_peers_says_how_to_build_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(native, "PEERS_BIN", tmp_path)
    outcome = CliRunner().invoke(main, ["bench", "peers", "--limit", "1"])

    assert outcome.exit_code == 1
    assert "llama-server is not built" in outcome.output and "make bench-tools" in outcome.output


@pytest.mark.model
async def test_the_real_llama_server_counts_what_it_generates(tmp_path: Path) -> None:
    try:
        peer("llama-server")
    except ToolMissing as missing:
        pytest.skip(f"{missing} ({missing.hint}; the test suite never builds it)")
    from cepo.backends.model_files import check_model_file
    from cepo.backends.weights import cpu_weights

    setup = NativeSetup(cpu_weights(check_model_file(None)), 2, 2048, 512, 256, True)
    with servers.llama_server(setup, slots=2, logs=tmp_path) as url:
        async with httpx.AsyncClient() as client:
            count = peers.server_count(client, url)
            before = await count()
            reply = await client.post(
                f"{url}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "ignore_eos": True},
                timeout=60,
            )
            reply.raise_for_status()
            assert await count() - before == 3
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")


def test_saved_figures_replace_the_last_copy_whole(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    save_figures(path, {"questions": ["q0"]})
    save_figures(path, {"questions": ["q0", "q1"]})

    assert json.loads(path.read_text()) == {"questions": ["q0", "q1"]}
    assert [p.name for p in tmp_path.iterdir()] == ["peers.json"]
