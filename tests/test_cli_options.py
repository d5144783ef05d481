"""The backend options are one set, with one meaning each, for every command that opens a backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scripted_backend import ScriptedBackend

from cepo.cli import main, options
from cepo.methods.cepo_method import CepoSettings

COMMANDS = {
    "chat": ["chat", "--method", "plain", "--quiet", "What is 2 + 2?"],
    "eval": ["eval", "--dataset", "letters", "--limit", "1", "--methods", "plain"],
    "bench method": ["bench", "method", "--method", "plain", "--question", "What is 2 + 2?"],
}
SHARED = ["--model", "--base-url", "--api-key-upstream", "--model-name", "--upstream-timeout", "--threads"]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def open_backend(**chosen: Any) -> ScriptedBackend:
        calls.append(chosen)
        return ScriptedBackend([], default="4")

    monkeypatch.setattr(options, "open_backend", open_backend)
    return calls


@pytest.mark.parametrize("command", [*COMMANDS, "serve", "models"])
def test_every_command_that_opens_a_backend_takes_the_same_options(command: str) -> None:
    shown = CliRunner().invoke(main, [*command.split(), "--help"]).output
    assert all(option in shown for option in SHARED), shown


@pytest.mark.parametrize("command", COMMANDS)
def test_the_servers_own_key_never_goes_upstream(
    command: str, opened: list[dict[str, Any]], tmp_path: Path
) -> None:
    args = [*COMMANDS[command], "--base-url", "http://127.0.0.1:9/v1", "--model-name", "m", "--threads", "1"]
    args += ["--out", str(tmp_path / "out")] if command == "eval" else []
    result = CliRunner().invoke(main, args, env={"CEPO_API_KEY": "the-servers-own"})
    assert result.exit_code == 0, result.output
    assert [call["api_key"] for call in opened] == [None]
    assert (opened[0]["model_name"], opened[0]["threads"]) == ("m", 1)

    again = CliRunner().invoke(main, args, env={"CEPO_UPSTREAM_API_KEY": "upstream"})
    assert again.exit_code == 0, again.output
    assert opened[-1]["api_key"] == "upstream"


def test_config_published_loads_the_published_open_loop_that_ships_with_cepo() -> None:
    config = CepoSettings.of(options.load_options(Path("published")))
    assert (config.bestofn_n, config.planning_n, config.planning_m, config.candidate_cap) == (3, 3, 6, 3)
    assert (config.rating_type, config.repair_rounds, config.stop_when) == ("absolute", 0, "never")
    assert config.plan.max_tokens == 4096
