"""Run scoring programs in the sandbox and turn what happened into a Verdict."""

from __future__ import annotations

import secrets

from cepo.checks.examples import failure
from cepo.evals.base import Verdict
from cepo.sandbox import Limits, run_code_async


async def run_check(source: str, limits: Limits) -> Verdict:
    """Pass when `source` runs to its very end: it exits cleanly and prints a marker appended after it.

    The marker keeps an answer that exits early (`exit()` in a completion or a prediction) from passing
    as if every assertion had held.
    """
    marker = f"all checks passed {secrets.token_hex(8)}"
    result = await run_code_async(f"{source}\n\nprint({marker!r})\n", limits=limits)
    if result.ok and result.stdout.rstrip().endswith(marker):
        return Verdict(passed=True)
    return Verdict(
        passed=False, detail=failure(result) if not result.ok else "exited before the end of the checks"
    )
