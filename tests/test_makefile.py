"""The Makefile's demo target hands its question to `cepo chat` as it is written, quotes and all: run with
a stub `cepo` that records its arguments, and a set-up stamp that says everything is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def demo_arguments(tmp_path: Path, *variables: str) -> list[str]:
    """The arguments `make demo` gives `cepo`."""
    stub, record = tmp_path / "cepo", tmp_path / "argv.json"
    stub.write_text(
        f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
    )
    stub.chmod(0o755)
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml: nothing to install
    overrides = [f"BIN={tmp_path}", f"STAMP={stamp}", *variables]
    subprocess.run(["make", "-s", "-C", str(ROOT), "demo", *overrides], check=True, capture_output=True)
    return json.loads(record.read_text())


def test_the_demo_question_reaches_cepo_verbatim(tmp_path: Path) -> None:
    assert demo_arguments(tmp_path) == ["chat", """How many r's are in the word "strawberry"?"""]


def test_a_question_given_to_make_keeps_its_quotes_and_backslashes(tmp_path: Path) -> None:
    question = """It's "quoted" twice, with a \\ and `echo ticks`?"""  # a `$` is make's own: `$$` gives one
    assert demo_arguments(tmp_path, f"QUESTION={question}") == ["chat", question]
