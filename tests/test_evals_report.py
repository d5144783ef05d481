"""The report: Wilson intervals, the markdown table per dataset, and the PNG plots."""

import warnings
from pathlib import Path

import pytest

from cepo.errors import CepoError
from cepo.evals.report import figure, summarize, wilson_interval, write_report
from cepo.evals.results import Record, ResultsFile, settings_hash, settings_label

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def record(
    dataset: str,
    method: str,
    problem: int,
    passed: bool,
    tokens: int,
    settings: dict,
    candidates_passed: list[bool] | None = None,
) -> Record:
    return Record(
        dataset=dataset,
        problem=str(problem),
        method=method,
        settings=settings,
        settings_hash=settings_hash(settings, "tiny", method),
        model="tiny",
        answer="",
        passed=passed,
        candidates_passed=candidates_passed,
        prompt_tokens=50,
        completion_tokens=tokens,
        wasted_tokens=0,
        seconds=tokens / 100,
    )


def write_results(directory: Path) -> None:
    with ResultsFile(directory) as results:
        for problem in range(10):
            results.append(record("letters", "plain", problem, problem < 2, 100, {}))
            results.append(record("letters", "cepo", problem, problem < 5, 1000, {"bestofn_n": 2}))
            # The choice misses the one right candidate of problem 8.
            candidates = [problem < 8, problem == 8, False, False]
            four = {"bestofn_n": 4}
            results.append(record("letters", "cepo", problem, problem < 8, 2000, four, candidates))
        for problem in range(4):
            results.append(record("humaneval", "plain", problem, problem == 0, 300, {}))


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_summaries_group_by_method_and_setting(tmp_path: Path) -> None:
    write_results(tmp_path)
    summaries = {(s.dataset, s.label): s for s in summarize(ResultsFile(tmp_path).read())}
    assert set(summaries) == {
        ("letters", "plain"),
        ("letters", "cepo (bestofn_n=2)"),
        ("letters", "cepo (bestofn_n=4)"),
        ("humaneval", "plain"),
    }
    best = summaries[("letters", "cepo (bestofn_n=4)")]
    assert (best.total, best.passed, best.mean_tokens, best.mean_seconds) == (10, 8, 2000, 20)
    assert best.any_candidate_passed == 9
    assert summaries[("letters", "plain")].any_candidate_passed is None  # recorded before this was kept
    assert best.accuracy_per_1k_tokens == pytest.approx(40.0)  # 80% at 2k tokens


def test_report_writes_a_table_per_dataset_and_nonempty_plots(tmp_path: Path) -> None:
    write_results(tmp_path)
    text = write_report(tmp_path)

    assert (tmp_path / "report.md").read_text() == text
    assert "## letters" in text and "## humaneval" in text
    assert "| tiny | cepo (bestofn_n=4) | 10 | 80.0% (49.0-94.3) | 2000 | 20.00 | 40.0 | 90.0% |" in text
    assert "| tiny | plain | 4 | 25.0% (4.6-69.9) | 300 | 3.00 | 83.3 | - |" in text
    for dataset in ("letters", "humaneval"):
        for axis in ("tokens", "seconds"):
            png = tmp_path / f"{dataset}-accuracy-vs-{axis}.png"
            assert png.read_bytes().startswith(PNG_SIGNATURE)
            assert png.stat().st_size > 5000
            assert f"]({png.name})" in text


def test_chart_labels_curve_points_and_names_a_single_setting_in_the_legend(tmp_path: Path) -> None:
    with ResultsFile(tmp_path) as results:
        for problem in range(10):
            results.append(
                record("letters", "plain", problem, problem < 1, 60, {"sample": {"temperature": 0}})
            )
            results.append(record("letters", "self-consistency", problem, problem < 1, 80, {}))
            results.append(record("letters", "cepo", problem, problem < 2, 1000, {"bestofn_n": 2}))
            results.append(record("letters", "cepo", problem, problem < 3, 2000, {}))
    axes = figure(summarize(ResultsFile(tmp_path).read()), "tokens").axes[0]

    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["plain (sample.temperature=0)", "self-consistency", "cepo"]
    # Only the curve's points carry labels, so the two cheap points side by side cannot overlap.
    assert [text.get_text() for text in axes.texts] == ["bestofn_n=2", "defaults"]
    # The scale ends just above the highest interval (30% of 10 reaches 60.3%), not at 100%.
    assert axes.get_ylim() == (0, 70)


def test_report_of_an_empty_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(CepoError, match="no results"):
        write_report(tmp_path)


def test_a_long_setting_is_wrapped_so_the_chart_keeps_its_layout(tmp_path: Path) -> None:
    steps = ("plan", "execute", "refine", "final", "rating")
    many = {"bestofn_n": 2, "seed": 7, **{step: {"max_tokens": 64, "temperature": 0.5} for step in steps}}
    with ResultsFile(tmp_path) as results:
        for problem in range(4):
            results.append(record("humaneval", "plain", problem, problem < 1, 100, many))
    with warnings.catch_warnings():
        # Unwrapped, the legend is wider than the figure and matplotlib cannot lay the chart out.
        warnings.filterwarnings("error", message="Tight layout not applied")
        axes = figure(summarize(ResultsFile(tmp_path).read()), "tokens").axes[0]

    [label] = [text.get_text() for text in axes.get_legend().get_texts()]
    assert label.replace("\n", " ") == f"plain ({settings_label(many)})"
    assert max(len(line) for line in label.splitlines()) <= 50
