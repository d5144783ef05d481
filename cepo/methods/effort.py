"""`reasoning_effort` (OpenAI's request field; `cepo chat --effort`) as compute, in one table: EFFORTS.

An effort sets the compute of cepo, the method it names (EFFORT_METHOD): `none` answers with plain
instead, the others run cepo with some settings over its defaults. A request for any other method runs
that method as asked. Settings the request or the command line gives itself (the `cepo` field, a config
file) override the effort's.

Low is one candidate, medium the defaults, high waves of five candidates. `cepo eval --efforts`
measures them (docs/results.md, "reasoning_effort"). They are settings over the defaults, so a new
measurement retunes this table alone.
"""

from __future__ import annotations

from typing import NamedTuple

from cepo.methods import cepo_method, plain
from cepo.methods.settings import Options

EFFORT_METHOD = cepo_method.NAME


class Effort(NamedTuple):
    method: str  # the method that runs
    options: Options  # its settings over the defaults


ONE_CANDIDATE = Effort(EFFORT_METHOD, {"bestofn_n": 1, "max_candidates": 1})
EFFORTS: dict[str, Effort] = {  # least compute first
    "none": Effort(plain.NAME, {}),  # no reasoning: one completion
    "minimal": ONE_CANDIDATE,
    "low": ONE_CANDIDATE,
    "medium": Effort(EFFORT_METHOD, {}),  # the defaults
    "high": Effort(EFFORT_METHOD, {"bestofn_n": 5}),  # and so up to ten candidates
}


def at_effort(method: str, effort: str | None) -> Effort:
    """The run a request for `method` at `effort` (one of EFFORTS, or None) gets."""
    if effort is None or method != EFFORT_METHOD:
        return Effort(method, {})
    return EFFORTS[effort]
