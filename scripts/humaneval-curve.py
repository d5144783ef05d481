"""HumanEval, all 164: accuracy against tokens for every setting measured on the whole set, in one plot.

The points come from separate runs (different sessions and CPUs; accuracy and tokens do not depend on the
CPU), so no one eval directory holds them all: their figures are docs/results.md's, repeated here.

    .venv/bin/python scripts/humaneval-curve.py docs/results/humaneval-164-curve.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from cepo.evals.report import Summary, figure

MODEL = "SmolLM2-135M-Instruct"
# (method, settings, problems passed of 164, generated tokens per problem), from docs/results.md.
POINTS = [
    ("plain", {}, 10, 137),  # greedy: the first table
    ("cepo", {"bestofn_n": 1, "version": 6}, 11, 714),  # one candidate: "What would move HumanEval"
    # v7's 14 at 1,342 ("The closed loop") sits on top of this point: the same settings, one run earlier
    ("cepo", {"defaults": "v11 (wide, no repair)"}, 12, 1321),  # "HumanEval at v11"
    ("cepo", {"defaults": "v6 (3 x 3, refine, rated)"}, 18, 2408),  # the first table
]


def main(out: Path) -> None:
    summaries = [
        Summary(
            dataset="humaneval (all 164)",
            model=MODEL,
            method=method,
            settings=settings,
            total=164,
            passed=passed,
            errors=0,
            any_candidate_passed=None,
            mean_tokens=tokens,
            mean_seconds=0.0,  # not plotted: the runs' CPUs differ
        )
        for method, settings, passed, tokens in POINTS
    ]
    figure(summaries, "tokens").savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
