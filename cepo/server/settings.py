"""What a server operator sets: access, limits, and the methods' default settings.

The ceilings (`max_tokens`, `max_stops`, `max_branches`, `max_sandbox_seconds`) bound what one request may
ask of the backend and the sandbox. They are checked on a run's final settings, whatever set them (the
config file, the request's OpenAI fields, its `cepo` field), so no path around them is left open.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cepo.methods import METHODS, configure
from cepo.methods.settings import ConfigError, RunSettings


class Overrun(NamedTuple):
    """A setting over one of the server's ceilings."""

    setting: str | None  # its path in the method's settings: "sample.max_tokens", "k"; None: the runs' n
    problem: str  # what is over which ceiling, to follow the setting's name


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str | None = Field(None, description="clients must send it as a bearer token; None: open")
    max_concurrent: int = Field(8, ge=1, description="requests running at once; the rest queue")
    max_queued: int = Field(32, ge=0, description="requests waiting for a slot; beyond that, 429")
    retry_after_s: int = Field(5, ge=1, description="what a 429 tells the client to wait")
    max_n: int = Field(4, ge=1, le=16, description="most choices (runs of the method) per request")
    max_tokens: int = Field(
        4096, ge=1, le=65536, description="most tokens per step: the answer budget and every step's budget"
    )
    max_stops: int = Field(4, ge=0, description="most stop strings of a request and of each step, as OpenAI")
    max_branches: int = Field(
        64, ge=1, description="most branches one request keeps decoding at once: n times its widest phase"
    )
    max_sandbox_seconds: float = Field(
        10.0, gt=0.0, le=600.0, description="most time a request's code run may take (sandbox_seconds)"
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="largest request body; a longer one is refused (413) unread"
    )
    body_timeout_s: float = Field(30.0, gt=0.0, description="time a client has to send its body; then 408")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="the methods' settings (see cepo.methods.check_all); requests override",
    )

    @model_validator(mode="after")
    def _options_within_the_ceilings(self) -> ServerSettings:
        """Every method's settings, as the options (or their defaults) make them, are within the ceilings:
        otherwise every request for that method would be refused for settings its client never sent. A
        ConfigError, not a ValueError, so that it leaves pydantic as it is: one line and a hint."""
        for method in METHODS.values():
            overrun = self.overrun(configure(method, self.options))
            if overrun is not None:
                raise ConfigError(
                    f"the {method.name} method's {overrun.setting} {overrun.problem}",
                    hint="lower it in --config, or raise the server's limit (cepo serve --help names them)",
                )
        return self

    def overrun(self, settings: RunSettings, n: int = 1) -> Overrun | None:
        """The first ceiling that `n` runs with `settings` at once would pass; None when they pass none."""
        for name, step in settings.steps().items():
            if step.max_tokens > self.max_tokens:
                return Overrun(
                    f"{name}.max_tokens",
                    f"is {step.max_tokens}; this server allows at most {self.max_tokens} tokens per step",
                )
            if len(step.stop) > self.max_stops:
                return Overrun(
                    f"{name}.stop",
                    f"holds {len(step.stop)} strings; this server allows at most {self.max_stops} per step",
                )
        if settings.sandbox_seconds > self.max_sandbox_seconds:
            return Overrun(
                "sandbox_seconds",
                f"is {settings.sandbox_seconds:g}; this server allows at most "
                f"{self.max_sandbox_seconds:g} seconds per code run",
            )
        widest: tuple[str | None, int] = (None, 1)  # no fan-out: one branch per run
        setting, width = max(settings.fan_out().items(), key=lambda phase: phase[1], default=widest)
        if n * width > self.max_branches:
            runs = f"{n} runs of {width}: " if n > 1 else ""
            return Overrun(
                setting,
                f"makes {runs}{n * width} branches at once; this server allows at most "
                f"{self.max_branches} per request",
            )
        return None
