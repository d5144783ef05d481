"""A method's one declaration: everything the server, the live view, the transcript and the eval harness
need to know of it. Each method's file ends with its `Method(...)`; `cepo.methods` registers them."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cepo.methods.context import RunContext
from cepo.methods.events import MethodResult, Stage
from cepo.methods.settings import RunSettings


@dataclass(frozen=True)
class Method:
    name: str  # what a client asks for as the model, and what results are filed under
    # Raise it when a change alters what the method generates or how it picks an answer: eval results it
    # made before are then told apart from new ones instead of resuming as if the same method made them.
    version: int
    run: Callable[[RunContext[Any]], Awaitable[MethodResult]]
    settings: type[RunSettings]
    answer_stage: Stage  # the stage whose branch of the chosen candidate is the answer
    # The settings step that a request's answer budget (`max_tokens`) sets, and its `temperature` too
    # unless the method keeps its own per-step temperatures.
    answer_step: str
    request_temperature: bool = True
    live_answer: bool = False  # the answer streams token by token as it is generated (it is the whole run)
    stage_titles: Mapping[Stage, str] = field(default_factory=dict)  # headings of its branches' stages
    numbered_stages: frozenset[Stage] = frozenset()  # a candidate has several of these: show which

    @property
    def summary(self) -> str:
        """The first paragraph of its module's docstring, without the leading "name:"."""
        paragraph = " ".join((sys.modules[self.run.__module__].__doc__ or "").split("\n\n")[0].split())
        return paragraph.split(": ", 1)[-1]

    def title(self, stage: Stage) -> str:
        return self.stage_titles.get(stage, stage.capitalize())
