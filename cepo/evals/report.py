"""The report of an eval directory: accuracy against compute, as markdown tables and PNG plots.

One row (and one plot point) per dataset, model, method and setting.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import BaseModel

from cepo.errors import CepoError
from cepo.evals.results import Record, ResultsFile, settings_label

Z_95 = 1.959964
REPORT_NAME = "report.md"
Axis = Literal["tokens", "seconds"]
NOTES = """Accuracy carries a 95% Wilson interval (samples of one problem count as separate trials).
Tokens count every token generated for a problem, kept or wasted: branches cut by their limit or
cancelled cost compute all the same. Seconds are each problem's own wall time, which includes waiting for
its turn in the batch, so they depend on --concurrency.
"Any candidate" counts the problems where at least one of the method's candidates would have passed had
it been chosen: what a perfect choice would score. Below it, the choice lost right answers; at it, only
better candidates (more of them, or a stronger model) raise accuracy. It shows "-" for records made
before candidates were scored."""
LEGEND_WIDTH = 50  # characters per line of a legend entry
POINT_LABEL_WIDTH = 30  # characters per line of a point's label
AXIS_TITLES: dict[Axis, str] = {
    "tokens": "mean tokens generated per problem",
    "seconds": "mean seconds per problem",
}


def wilson_interval(passed: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: sound at 0%, 100% and for small samples."""
    if total == 0:
        return (0.0, 1.0)
    p = passed / total
    denominator = 1 + z * z / total
    center = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, center - half), min(1.0, center + half))


class Summary(BaseModel):
    """One method with one setting on one dataset and model."""

    dataset: str
    model: str
    method: str
    settings: dict[str, Any]
    total: int
    passed: int
    errors: int  # generations the method could not run at all (counted as wrong)
    any_candidate_passed: int | None  # generations where some candidate passes (None: not recorded)
    mean_tokens: float
    mean_seconds: float

    @property
    def label(self) -> str:
        return f"{self.method} ({settings_label(self.settings)})" if self.settings else self.method

    @property
    def accuracy(self) -> float:
        return self.passed / self.total

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.passed, self.total)

    @property
    def accuracy_per_1k_tokens(self) -> float | None:
        """Percentage points of accuracy per thousand tokens generated per problem."""
        return 100 * self.accuracy / (self.mean_tokens / 1000) if self.mean_tokens else None

    def measure(self, axis: Axis) -> float:
        return self.mean_tokens if axis == "tokens" else self.mean_seconds


def summarize(records: list[Record]) -> list[Summary]:
    """One summary per dataset, model, method and setting, in the order they first appear."""
    groups: dict[tuple[str, str, str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record.dataset, record.model, record.method, record.settings_hash)].append(record)
    return [
        Summary(
            dataset=dataset,
            model=model,
            method=method,
            settings=group[0].settings,
            total=len(group),
            passed=sum(record.passed for record in group),
            errors=sum(record.error is not None for record in group),
            any_candidate_passed=_any_candidate_passed(group),
            mean_tokens=sum(record.generated_tokens for record in group) / len(group),
            mean_seconds=sum(record.seconds for record in group) / len(group),
        )
        for (dataset, model, method, _), group in groups.items()
    ]


def _any_candidate_passed(records: list[Record]) -> int | None:
    if any(record.candidates_passed is None for record in records):
        return None
    return sum(any(record.candidates_passed or []) for record in records)


def markdown_table(summaries: list[Summary]) -> str:
    """The table of one dataset's summaries."""
    lines = [
        "| model | method | n | accuracy (95% CI) | tokens / problem | seconds / problem "
        "| acc. pts / 1k tokens | any candidate |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries:
        low, high = summary.interval
        per_1k = summary.accuracy_per_1k_tokens
        errors = f" ({summary.errors} failed)" if summary.errors else ""
        oracle = summary.any_candidate_passed
        lines.append(
            f"| {summary.model} | {summary.label} | {summary.total}{errors} "
            f"| {100 * summary.accuracy:.1f}% ({100 * low:.1f}-{100 * high:.1f}) "
            f"| {summary.mean_tokens:.0f} | {summary.mean_seconds:.2f} "
            f"| {'-' if per_1k is None else f'{per_1k:.1f}'} "
            f"| {'-' if oracle is None else f'{100 * oracle / summary.total:.1f}%'} |"
        )
    return "\n".join(lines)


def figure(summaries: list[Summary], axis: Axis) -> Figure:
    """Accuracy against compute, one point per method and setting with its interval. The settings of one
    method are joined into its compute curve, each point labelled with its setting; a method run in one
    setting names it in the legend instead, so that labels of nearby points cannot overlap."""
    chart = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(chart)
    axes = chart.add_subplot()
    curves: dict[tuple[str, str], list[Summary]] = defaultdict(list)
    for summary in summaries:
        curves[(summary.model, summary.method)].append(summary)
    several_models = len({model for model, _ in curves}) > 1
    for (model, _), points in curves.items():
        points.sort(key=lambda summary: summary.measure(axis))
        xs = [summary.measure(axis) for summary in points]
        ys = [100 * summary.accuracy for summary in points]
        errors = [
            [100 * (summary.accuracy - summary.interval[0]) for summary in points],
            [100 * (summary.interval[1] - summary.accuracy) for summary in points],
        ]
        name = points[0].label if len(points) == 1 else points[0].method
        label = f"{name} · {model}" if several_models else name
        # Settings can be many: wrapped, a long label stays inside the figure.
        axes.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=textwrap.fill(label, LEGEND_WIDTH))
        if len(points) > 1:
            for summary, x, y in zip(points, xs, ys, strict=True):
                text = textwrap.fill(settings_label(summary.settings), POINT_LABEL_WIDTH)
                axes.annotate(text, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    highest = max(100 * summary.interval[1] for summary in summaries)
    # Small models score low: a scale that ends a little above the highest interval keeps points apart.
    axes.set_ylim(0, min(100, 10 * math.ceil((highest + 5) / 10)))
    axes.set_xlabel(AXIS_TITLES[axis])
    axes.set_ylabel("accuracy (%), 95% Wilson interval")
    axes.set_title(f"{summaries[0].dataset}: accuracy against {axis}")
    axes.margins(x=0.15)  # room for the labels of the outermost points
    axes.grid(alpha=0.3)
    axes.legend()
    chart.tight_layout()
    return chart


def write_report(directory: Path) -> str:
    """Write report.md and the PNG plots into `directory`; returns the markdown."""
    records = ResultsFile(directory).read()
    if not records:
        raise CepoError(f"no results in {directory}", hint="run `cepo eval --dataset NAME --out DIR` first")
    by_dataset: dict[str, list[Summary]] = defaultdict(list)
    for summary in summarize(records):
        by_dataset[summary.dataset].append(summary)
    sections = ["# cepo eval report"]
    for dataset, summaries in by_dataset.items():
        images = []
        for axis in AXIS_TITLES:
            name = f"{dataset}-accuracy-vs-{axis}.png"
            figure(summaries, axis).savefig(directory / name, format="png")
            images.append(f"![{dataset}: accuracy against {axis}]({name})")
        sections.append(f"## {dataset}\n\n{markdown_table(summaries)}\n\n" + "\n".join(images))
    sections.append(NOTES)
    text = "\n\n".join(sections) + "\n"
    (directory / REPORT_NAME).write_text(text)
    return text
