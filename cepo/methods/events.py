"""What a reasoning method emits: one stream of events, ending with the whole result.

The CLI live view, the server's SSE stream and the eval logs all read this one stream. Every event and
the result are pydantic models with a `type` field, so `event.model_dump_json()` is the wire format and
`EventAdapter.validate_json(line)` reads it back.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter, computed_field

from cepo.backends.base import FinishReason
from cepo.checks import Checks, TaskKind

# "approaches" (plan diversity), "plan", "execute", "refine", "final", "repair" (cepo); "answer" (plain,
# direct answers); "sample" (self-consistency, best-of-n); "check" (code and examples run); "rate" (model
# ratings).
Stage = str


class StageStarted(BaseModel):
    """A stage began, for one candidate or (candidate None) for the whole run."""

    type: Literal["stage_started"] = "stage_started"
    stage: Stage
    candidate: int | None = None


class StageEnded(BaseModel):
    type: Literal["stage_ended"] = "stage_ended"
    stage: Stage
    candidate: int | None = None
    seconds: float


class BranchToken(BaseModel):
    """New text on one branch. `branch` is the attempt (cepo plans and executions) or rating number."""

    type: Literal["branch_token"] = "branch_token"
    stage: Stage
    candidate: int | None
    branch: int
    text: str


class BranchEnded(BaseModel):
    """A branch finished: on its own (stop), cut by its token limit (length), or no longer needed."""

    type: Literal["branch_ended"] = "branch_ended"
    stage: Stage
    candidate: int | None
    branch: int
    tokens: int
    finish_reason: FinishReason


class Score(BaseModel):
    """Why a candidate ranks where it does; compared field by field in this order."""

    parses: bool | None = None  # code: the extracted code is valid Python
    examples_passed: int | None = None  # code: examples from the question or the request that passed
    examples_total: int | None = None
    votes: int | None = None  # short answers: candidates that reached the same normalized answer
    rating: float | None = None  # the model's rating: 0-10 (absolute) or pairwise wins
    rating_error: str | None = None  # a rating request for it failed; the rest of the rating still counts

    def key(self) -> tuple[bool, int, int, float]:
        rating = self.rating if self.rating is not None else -1.0
        return (self.parses is not False, self.examples_passed or 0, self.votes or 0, rating)


class CandidateScored(BaseModel):
    type: Literal["candidate_scored"] = "candidate_scored"
    candidate: int
    answer: str | None  # the normalized answer (short answers) or the code (code questions)
    score: Score


class CandidateFailed(BaseModel):
    """A backend request of this candidate failed: the candidate is out of the run, the others go on."""

    type: Literal["candidate_failed"] = "candidate_failed"
    candidate: int
    error: str


class RunStopped(BaseModel):
    """The run stopped generating early (an answer was verified or agreed): every branch still running
    ends cancelled, and the candidates still at work are out of the run."""

    type: Literal["run_stopped"] = "run_stopped"
    reason: str


class RepairRound(BaseModel):
    """One turn that showed a candidate why its check failed and asked for a fixed version (cepo)."""

    index: int
    failure: str  # what the turn told the model: the failing call, expected and returned value, the error
    reply: str
    tokens: int
    passed: bool  # the fixed version passed its check


class Attempt(BaseModel):
    """One plan and its execution (cepo step 1 and 2)."""

    index: int
    plan: str
    plan_tokens: int
    execution: str | None = None
    execution_tokens: int = 0
    status: Literal["complete", "rejected", "cancelled"]
    reason: str = ""  # why it was rejected or cancelled


class Candidate(BaseModel):
    """One answer the method may return, with everything that produced and judged it."""

    index: int
    approach: str | None = None  # plan diversity: the approach its plans follow
    attempts: list[Attempt] = Field(default_factory=list)
    fallback: bool = False  # no plan completed, so the model answered directly
    refined: str | None = None  # cepo step 3: the corrected solution
    final: str  # the answer text as the user would get it
    checks: Checks
    repairs: list[RepairRound] = Field(default_factory=list)  # cepo: its repair rounds, in order
    score: Score = Field(default_factory=Score)
    error: str | None = None  # why the candidate failed (a backend error); a failed one is never chosen
    stopped: bool = False  # the run stopped before it was done: its tokens are wasted, it is never chosen


class StageUsage(BaseModel):
    """Tokens and time of one stage. Tokens are disjoint: a generated token is either completion (kept)
    or wasted (rejected or cancelled branches); a prompt is counted once per request, not per branch."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, those the backend reused from its cache
    completion_tokens: int = 0
    wasted_tokens: int = 0
    seconds: float = 0.0  # wall time while at least one of its requests (or checks) ran; stages overlap


class MethodResult(BaseModel):
    method: str
    kind: TaskKind
    answer: str  # the chosen candidate's final text
    extracted: str | None  # its normalized short answer, or its code
    chosen: int
    candidates: list[Candidate]
    agreed: bool = False  # every candidate reached the same answer (or passed every example): no rating
    stopped: str | None = None  # why generation stopped early (an answer verified or agreed), if it did
    stages: dict[Stage, StageUsage]
    seconds: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> list[int]:
        """The candidates lost to a backend error."""
        return [candidate.index for candidate in self.candidates if candidate.error is not None]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def usage(self) -> StageUsage:
        """Totals over stages (seconds: the whole run)."""
        total = StageUsage(seconds=self.seconds)
        for stage in self.stages.values():
            total.requests += stage.requests
            total.prompt_tokens += stage.prompt_tokens
            total.cached_tokens += stage.cached_tokens
            total.completion_tokens += stage.completion_tokens
            total.wasted_tokens += stage.wasted_tokens
        return total


class Finished(BaseModel):
    """The last event of every run."""

    type: Literal["finished"] = "finished"
    result: MethodResult


Event = Annotated[
    StageStarted
    | StageEnded
    | BranchToken
    | BranchEnded
    | CandidateScored
    | CandidateFailed
    | RunStopped
    | Finished,
    Field(discriminator="type"),
]
EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
