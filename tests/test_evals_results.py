"""The results file: durable appends, resume keys, and a last line cut short by an interruption."""

import dataclasses
from pathlib import Path

import pytest

from cepo.errors import CepoError
from cepo.evals.results import Record, ResultsFile, settings_hash, settings_label
from cepo.methods import METHODS


def record(problem: str, passed: bool = True, settings: dict | None = None, tokens: int = 100) -> Record:
    settings = settings or {}
    return Record(
        dataset="letters",
        problem=problem,
        method="plain",
        settings=settings,
        settings_hash=settings_hash(settings, "tiny", "plain"),
        model="tiny",
        answer="3",
        passed=passed,
        prompt_tokens=20,
        completion_tokens=tokens,
        wasted_tokens=10,
        seconds=0.5,
    )


def test_appended_records_read_back(tmp_path: Path) -> None:
    with ResultsFile(tmp_path) as results:
        results.append(record("a"))
        results.append(record("b", passed=False))
    read = ResultsFile(tmp_path).read()
    assert [(r.problem, r.passed) for r in read] == [("a", True), ("b", False)]
    assert read[0].generated_tokens == 110


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert ResultsFile(tmp_path / "new").read() == []


def test_truncated_last_line_is_ignored_and_dropped_before_appending(tmp_path: Path) -> None:
    with ResultsFile(tmp_path) as results:
        results.append(record("a"))
    path = tmp_path / "results.jsonl"
    whole = record("b").model_dump_json()
    with path.open("a") as file:
        file.write(whole[: len(whole) // 2])  # the run died halfway through writing this line

    assert [r.problem for r in ResultsFile(tmp_path).read()] == ["a"]
    with ResultsFile(tmp_path) as results:
        results.append(record("c"))
    assert [r.problem for r in ResultsFile(tmp_path).read()] == ["a", "c"]
    assert path.read_text().count("\n") == 2


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(record("a").model_dump_json())  # only the newline was lost
    assert [r.problem for r in ResultsFile(tmp_path).read()] == ["a"]
    with ResultsFile(tmp_path) as results:
        results.append(record("b"))
    assert [r.problem for r in ResultsFile(tmp_path).read()] == ["a", "b"]


def test_a_second_writer_is_refused_until_the_first_is_done(tmp_path: Path) -> None:
    with ResultsFile(tmp_path) as results:
        results.append(record("a"))
        with pytest.raises(CepoError, match="another `cepo eval` is writing to"), ResultsFile(tmp_path):
            pass
        results.append(record("b"))
    with ResultsFile(tmp_path) as results:
        results.append(record("c"))
    assert [r.problem for r in ResultsFile(tmp_path).read()] == ["a", "b", "c"]


def test_damaged_line_in_the_middle_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(f"{record('a').model_dump_json()}\n{{broken\n{record('b').model_dump_json()}\n")
    with pytest.raises(CepoError, match=r"results\.jsonl:2: not a result record"):
        ResultsFile(tmp_path).read()


def test_settings_hash_separates_configurations_and_models() -> None:
    assert settings_hash({"bestofn_n": 2}, "m", "cepo") == settings_hash({"bestofn_n": 2}, "m", "cepo")
    assert settings_hash({"bestofn_n": 2}, "m", "cepo") != settings_hash({"bestofn_n": 4}, "m", "cepo")
    assert settings_hash({}, "m", "cepo") != settings_hash({}, "other", "cepo")
    assert record("a").key != record("a", settings={"k": 3}).key


def test_settings_hash_tells_versions_of_a_method_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {method: settings_hash({"bestofn_n": 2}, "m", method) for method in ("plain", "cepo")}
    cepo = METHODS["cepo"]
    monkeypatch.setitem(METHODS, "cepo", dataclasses.replace(cepo, version=cepo.version + 1))
    assert settings_hash({"bestofn_n": 2}, "m", "cepo") != before["cepo"]
    assert settings_hash({"bestofn_n": 2}, "m", "plain") == before["plain"]  # its results still resume


def test_settings_label_flattens_nested_steps() -> None:
    assert settings_label({}) == "defaults"
    assert settings_label({"planning_n": 2, "plan": {"max_tokens": 64}}) == "plan.max_tokens=64 planning_n=2"
