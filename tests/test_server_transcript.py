"""The streamed reasoning text: one branch followed live, the others held back and written out whole."""

from __future__ import annotations

from cepo.checks import Checks
from cepo.methods import METHODS
from cepo.methods.events import BranchEnded, BranchToken, Candidate, CandidateScored, MethodResult, Score
from cepo.server.transcript import Transcript


def token(branch: int, text: str, stage: str = "plan", candidate: int | None = 0) -> BranchToken:
    return BranchToken(stage=stage, candidate=candidate, branch=branch, text=text)


def ended(branch: int, tokens: int = 2, reason: str = "stop", stage: str = "plan") -> BranchEnded:
    return BranchEnded(stage=stage, candidate=0, branch=branch, tokens=tokens, finish_reason=reason)  # type: ignore[arg-type]


def result(chosen: int, agreed: bool) -> MethodResult:
    candidates = [Candidate(index=i, final="3", checks=Checks(kind="number")) for i in range(2)]
    return MethodResult(
        method="cepo", kind="number", answer="3", extracted="3", chosen=chosen, candidates=candidates,
        agreed=agreed, stages={}, seconds=1.0,
    )  # fmt: skip


def test_the_first_branch_goes_out_live_and_the_others_wait_whole() -> None:
    transcript = Transcript(METHODS["cepo"])
    written = [
        transcript.feed(event)
        for event in [
            token(0, "Count"),
            token(1, "Spell"),
            token(0, " letters."),
            token(1, " it."),
            token(2, "Guess"),
            ended(1),
            ended(0),
            token(2, " three."),
            ended(2, reason="length"),
        ]
    ]
    assert written == [
        "[Plan 1 · candidate 1]\nCount",  # the very first token, at once
        "",
        " letters.",
        "",
        "",
        "",
        # plan 1 ends: plan 2 (finished meanwhile) comes out whole, then plan 3 so far, followed live after
        "\n\n[Plan 2 · candidate 1]\nSpell it.\n\n[Plan 3 · candidate 1]\nGuess",
        " three.",
        " [cut at 2 tokens]\n\n",
    ]


def test_notes_wait_for_the_live_branch_and_the_choice_closes_the_transcript() -> None:
    transcript = Transcript(METHODS["cepo"])
    score = CandidateScored(candidate=1, answer="3", score=Score(votes=2, rating=7.0))
    assert transcript.feed(token(0, "Rate", stage="rate", candidate=0)) == "[Rating · candidate 1]\nRate"
    assert transcript.feed(score) == ""
    assert transcript.feed(token(1, "Held", stage="rate", candidate=1)) == ""
    assert (
        transcript.feed(ended(0, stage="rate"))
        == "\n\n[Check · candidate 2] answer '3'; votes 2; rating 7\n\n[Rating · candidate 2]\nHeld"
    )
    assert transcript.finish(result(chosen=1, agreed=False)) == "[Chosen: candidate 2]\n"


def test_finish_writes_what_still_waits_and_says_when_all_agreed() -> None:
    transcript = Transcript(METHODS["cepo"])
    transcript.feed(token(0, "A"))
    transcript.feed(token(1, "B"))
    transcript.feed(ended(1, reason="cancelled"))
    assert transcript.finish(result(chosen=0, agreed=True)) == (
        "[Plan 2 · candidate 1]\nB [stopped: no longer needed]\n\n"
        "[Chosen: candidate 1] (every candidate agrees)\n"
    )


def test_a_branch_without_a_candidate_is_headed_by_its_stage() -> None:
    assert (
        Transcript(METHODS["cepo"]).feed(token(0, "1.", stage="approaches", candidate=None))
        == "[Approaches]\n1."
    )
