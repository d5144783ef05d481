"""The eval harness on the real SmolLM2-135M model: HumanEval problems through plain and a small cepo,
scored in the sandbox, recorded, resumed and reported. A 135M model is rarely right, so this checks what
must hold whatever it writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_methods_model import SMALL

from cepo.backends.llama import LlamaEngine
from cepo.evals.harness import EvalPlan, run_eval
from cepo.evals.humaneval import HumanEval
from cepo.evals.report import write_report
from cepo.evals.results import ResultsFile
from cepo.methods import solve

pytestmark = pytest.mark.model


async def test_humaneval_runs_scores_every_candidate_resumes_and_reports(
    engine: LlamaEngine, tmp_path: Path
) -> None:
    dataset = HumanEval()
    problems = dataset.load(None, "stop").problems[:2]
    plan = EvalPlan(dataset=dataset, problems=problems, methods=["plain", "cepo"], settings=[SMALL])

    records = await run_eval(plan, backend=engine, solve=solve, results=ResultsFile(tmp_path), concurrency=2)

    assert sorted((r.problem, r.method) for r in records) == sorted(
        (p.id, m) for p in problems for m in ("plain", "cepo")
    )
    for record in records:
        assert record.error is None and record.generated_tokens > 0
        assert record.candidates_passed is not None
        candidates = 2 if record.method == "cepo" else 1
        assert len(record.candidates_passed) == len(record.candidates) == candidates
        assert record.chosen is not None
        assert record.candidates_passed[record.chosen] == record.passed  # its answer is the record's
        assert record.passed or record.detail  # a failure says why
    again = await run_eval(plan, backend=engine, solve=solve, results=ResultsFile(tmp_path))
    assert again == []  # every generation was on disk: the rerun resumes with nothing left to do

    report = write_report(tmp_path)
    assert "| SmolLM2-135M-Instruct" in report and "| cepo (" in report and "| plain (" in report
    assert (tmp_path / "humaneval-accuracy-vs-tokens.png").stat().st_size > 5000
