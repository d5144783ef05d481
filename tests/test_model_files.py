"""Model files are checked before llama.cpp sees them; every mistake ends in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cepo.backends import model_files as models
from cepo.cli import main
from cepo.errors import ModelError


def test_default_model_is_found_through_its_package() -> None:
    path = models.check_model_file(None)
    assert path.name == models.DEFAULT_MODEL_FILE
    assert path.stat().st_size > 50_000_000


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        models.check_model_file(tmp_path / "absent.gguf")


def test_file_that_is_not_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "weights.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelError, match="not a GGUF"):
        models.check_model_file(fake)


def test_model_larger_than_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "available_memory", lambda: 1024)
    with pytest.raises(ModelError, match="too large for memory"):
        models.check_model_file(None)


def test_cli_reports_a_bad_model_in_one_line_with_a_hint(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["chat", "hello", "--model", str(tmp_path / "absent.gguf")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("Error: model file not found")
    assert lines[1].startswith("Hint:")
