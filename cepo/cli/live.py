"""The terminal view of a method run: candidates side by side with their branches streaming, then the
checks and scores, then the chosen answer with token and time totals.

`LiveView.update(event)` takes the run's events; the view renders itself (a rich renderable), so
`rich.live.Live(view)` animates it. `summary(result)` renders the end of the run. Where the terminal
cannot redraw (a pipe, CI, a log), `progress_line(method, event)` tells each step in one plain line instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cepo.methods.events import (
    BranchEnded,
    BranchToken,
    CandidateFailed,
    CandidateScored,
    Event,
    Finished,
    MethodResult,
    RunStopped,
    Score,
    StageEnded,
    StageStarted,
)
from cepo.methods.method import Method
from cepo.server.transcript import describe_choice, describe_score, heading

TAIL_LINES = 4  # lines of a running branch shown
MIN_COLUMN = 40  # characters: candidates go side by side as long as each gets this much
_ENDINGS = {"stop": ("done", "green"), "length": ("cut", "yellow"), "cancelled": ("cancelled", "dim")}


@dataclass
class LaneView:
    """One branch: its text so far and how it ended."""

    title: str  # its stage's title
    branch: int
    text: str = ""
    tokens: int = 0
    finish_reason: str | None = None

    def render(self, width: int) -> RenderableType:
        label = Text(f"{self.title} {self.branch + 1}", style="bold")
        if self.finish_reason is None:
            label.append(" ...", style="cyan")
            lines = self.text.strip().splitlines()[-TAIL_LINES:]
            tail = Text("\n".join(line[:width] for line in lines), style="white")
            return Group(label, tail)
        word, style = _ENDINGS.get(self.finish_reason, (self.finish_reason, "dim"))
        label.append(f" {word}, {self.tokens} tok", style=style)
        return label


@dataclass
class CandidateView:
    method: Method
    index: int | None
    stage: str = "waiting"
    lanes: dict[tuple[str, int], LaneView] = field(default_factory=dict)
    answer: str | None = None
    score: Score | None = None
    error: str | None = None  # why it failed, if it did (the run goes on without it)

    def lane(self, stage: str, branch: int) -> LaneView:
        return self.lanes.setdefault((stage, branch), LaneView(self.method.title(stage), branch))

    def render(self, width: int, chosen: bool) -> RenderableType:
        title = "run" if self.index is None else f"candidate {self.index + 1}"
        running = [lane for lane in self.lanes.values() if lane.finish_reason is None]
        finished = [lane for lane in self.lanes.values() if lane.finish_reason is not None]
        body = Group(*(lane.render(width) for lane in finished + running)) if self.lanes else Text("")
        subtitle = self.stage if self.answer is None else f"answer: {_one_line(self.answer, width)}"
        border = "green" if chosen else "blue"
        if self.error is not None:
            subtitle, border = f"failed: {_one_line(self.error, width - 8)}", "red"
        title += " (chosen)" if chosen else ""
        return Panel(body, title=title, subtitle=subtitle, border_style=border)


class LiveView:
    """The state of one run, built from its events."""

    def __init__(self, question: str, method: Method) -> None:
        self.question, self.method = question, method
        self.started = time.perf_counter()
        self.candidates: dict[int | None, CandidateView] = {}  # None: the run's own branches (approaches)
        self.stage = "starting"
        self.result: MethodResult | None = None

    def update(self, event: Event) -> None:
        if isinstance(event, BranchToken):
            lane = self._candidate(event.candidate).lane(event.stage, event.branch)
            lane.text += event.text
            lane.tokens += 1  # about one token per event while it runs; exact once it ends
        elif isinstance(event, BranchEnded):
            lane = self._candidate(event.candidate).lane(event.stage, event.branch)
            lane.tokens, lane.finish_reason = event.tokens, event.finish_reason
        elif isinstance(event, StageStarted):
            self._stage_holder(event.candidate).stage = event.stage
        elif isinstance(event, StageEnded):
            holder = self._stage_holder(event.candidate)
            if holder.stage == event.stage:
                holder.stage = f"{event.stage} done"
        elif isinstance(event, CandidateFailed):
            self._candidate(event.candidate).error = event.error
        elif isinstance(event, CandidateScored):
            view = self._candidate(event.candidate)
            view.answer, view.score = event.answer, event.score
        elif isinstance(event, RunStopped):
            self.stage = f"stopped early: {event.reason}"
        elif isinstance(event, Finished):
            self.result = event.result

    @property
    def tokens(self) -> int:
        return sum(lane.tokens for view in self.candidates.values() for lane in view.lanes.values())

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        chosen = None if self.result is None else self.result.chosen
        views = sorted(self.candidates.values(), key=lambda v: -1 if v.index is None else v.index)
        per_row = max(1, min(len(views), options.max_width // MIN_COLUMN))
        text_width = options.max_width // per_row - 4  # inside a panel's borders and padding
        yield Text(self.question, style="bold")
        for start in range(0, len(views), per_row):
            row = Table.grid(expand=True, padding=(0, 1))
            for _ in range(per_row):
                row.add_column(ratio=1)
            row.add_row(
                *(view.render(text_width, view.index == chosen) for view in views[start : start + per_row])
            )
            yield row
        if any(view.score is not None for view in views):
            yield scores_table(views, chosen)
        elapsed = time.perf_counter() - self.started
        status = f"{self.method.name}, {self.stage}: {self.tokens} tokens generated, {elapsed:.1f} s"
        yield Text(status, style="dim")

    def _candidate(self, index: int | None) -> CandidateView:
        return self.candidates.setdefault(index, CandidateView(self.method, index))

    def _stage_holder(self, index: int | None) -> CandidateView | LiveView:
        """Whose stage an event tells: a candidate's, or (no candidate) the whole run's."""
        return self if index is None else self._candidate(index)


def scores_table(views: list[CandidateView], chosen: int | None) -> Table:
    table = Table(title="checks and scores", title_justify="left", expand=False)
    for column in ("candidate", "answer", "examples", "votes", "rating"):
        table.add_column(column)
    for view in views:
        if view.score is None or view.index is None:
            continue
        score = view.score
        examples = "" if score.examples_total is None else f"{score.examples_passed}/{score.examples_total}"
        if score.parses is False:
            examples = f"{examples} invalid code".strip()
        table.add_row(
            f"{view.index + 1}{' *' if view.index == chosen else ''}",
            _one_line(view.answer or "-", 40),
            examples,
            "" if score.votes is None else str(score.votes),
            "" if score.rating is None else f"{score.rating:g}",
            style="green" if view.index == chosen else None,
        )
    return table


def summary(result: MethodResult) -> RenderableType:
    """The chosen answer, then tokens and time per stage and in total."""
    usage = result.usage
    table = Table(title="tokens and time", title_justify="left")
    for column in ("stage", "requests", "prompt", "cached", "completion", "wasted", "seconds"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for name, stage in [*result.stages.items(), ("total", usage)]:
        table.add_row(
            name,
            str(stage.requests),
            str(stage.prompt_tokens),
            str(stage.cached_tokens),
            str(stage.completion_tokens),
            str(stage.wasted_tokens),
            f"{stage.seconds:.2f}",
            style="bold" if name == "total" else None,
        )
    agreed = " (all candidates agreed)" if result.agreed else ""
    title = f"answer of candidate {result.chosen + 1} of {len(result.candidates)}{agreed}"
    return Group(Panel(Text(result.answer.strip()), title=title, border_style="green"), table)


def progress_line(method: Method, event: Event) -> str | None:
    """One plain line telling what `event` did, in the transcript's words; None for a token."""
    if isinstance(event, StageStarted | StageEnded):
        where = [method.title(event.stage)]
        if event.candidate is not None:
            where.append(f"candidate {event.candidate + 1}")
        done = "started" if isinstance(event, StageStarted) else f"ended after {event.seconds:.1f} s"
        return f"[{' · '.join(where)}] {done}"
    if isinstance(event, BranchEnded):
        branch = heading(method, (event.stage, event.candidate, event.branch)).strip()
        how = {"stop": "done,", "length": "cut at", "cancelled": "cancelled after"}[event.finish_reason]
        return f"{branch} {how} {event.tokens} token{'' if event.tokens == 1 else 's'}"
    if isinstance(event, CandidateScored):
        return describe_score(event).strip()
    if isinstance(event, CandidateFailed):
        return f"[Failed · candidate {event.candidate + 1}] {event.error}"
    if isinstance(event, Finished):
        return describe_choice(event.result).strip()
    return None


def _one_line(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."
