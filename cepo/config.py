"""Settings of the reasoning methods: one validated pydantic object, read from YAML, overridable per request.

Counts and temperatures default to the published CePO values (3 candidates, 3 of at most 6 plans each,
temperatures 0.55 / 0.25 / 0.1 / 0). The published token budgets (4096 per step) would keep a small model
on a CPU busy for minutes, so the budgets here are sized for SmolLM2-class models; raise them for larger
ones. A YAML file in the published flat format (`planning_temperature_step1: ...`) loads too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cepo.backends.base import Sampling
from cepo.errors import CepoError

RatingType = Literal["absolute", "pairwise", "majority", "execution"]
TaskSetting = Literal["auto", "code", "number", "choice", "yesno", "open"]


class ConfigError(CepoError):
    """A setting is missing, unknown or out of range."""


class StepConfig(BaseModel):
    """Sampling of one step: its temperature and how many tokens one branch may generate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(ge=0.0, le=5.0)
    max_tokens: int = Field(ge=1, le=65536)
    stop: list[str] = Field(default_factory=list, description="texts that end a branch (left out of it)")

    def sampling(self, seed: int | None = None) -> Sampling:
        return Sampling(temperature=self.temperature, max_tokens=self.max_tokens, stop=self.stop, seed=seed)


class CepoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bestofn_n: int = Field(3, ge=1, le=16, description="cepo: candidates, each from its own plans")
    planning_n: int = Field(3, ge=1, le=16, description="cepo: complete plans kept per candidate")
    planning_m: int = Field(6, ge=1, le=64, description="cepo: most plan attempts per candidate")
    planning_spares: int = Field(
        0, ge=0, le=16, description="cepo: extra attempts kept running, so a cut plan costs no wait"
    )
    # A plan holds no code: a small model that starts writing code has finished planning, and cutting the
    # plan there keeps it, where running on into the token limit would reject it.
    plan: StepConfig = StepConfig(temperature=0.55, max_tokens=128, stop=["```"])
    execute: StepConfig = StepConfig(temperature=0.25, max_tokens=256)
    refine: StepConfig = StepConfig(temperature=0.1, max_tokens=256)
    final: StepConfig = StepConfig(temperature=0.0, max_tokens=96)
    approaches: StepConfig = StepConfig(temperature=0.7, max_tokens=128)  # plan diversity's request
    rating: StepConfig = StepConfig(temperature=0.1, max_tokens=128)  # every rating request
    rating_type: RatingType = Field("absolute", description="how the model breaks ties between candidates")
    plan_diversity: bool = Field(False, description="ask for distinct approaches first, one per candidate")
    k: int = Field(5, ge=1, le=64, description="samples of self-consistency and best-of-n")
    sample: StepConfig = StepConfig(temperature=0.7, max_tokens=256)  # plain, self-consistency, best-of-n
    task: TaskSetting = Field("auto", description="question kind; auto guesses it from the question")
    seed: int | None = Field(None, description="base seed; every branch of a run gets its own")
    sandbox_seconds: float = Field(5.0, gt=0.0, le=600.0, description="wall limit of one code run")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise ConfigError(f"invalid config: {_describe(error)}", hint=_HINT) from None

    @model_validator(mode="before")
    @classmethod
    def _complete_steps(cls, data: Any) -> Any:
        """Accept the published flat names, and fill a step given in part from that step's defaults."""
        if not isinstance(data, dict):
            return data
        data = {key: value for key, value in data.items() if key not in _IGNORED_PUBLISHED_KEYS}
        for old, (name, field) in _PUBLISHED_KEYS.items():
            if old in data:
                value = data.pop(old)
                data[name] = value if field is None else {**data.get(name, {}), field: value}
        for name, info in cls.model_fields.items():
            if isinstance(info.default, StepConfig) and isinstance(data.get(name), dict):
                data[name] = {**info.default.model_dump(), **data[name]}
        return data

    @model_validator(mode="after")
    def _enough_attempts(self) -> CepoConfig:
        if self.planning_m < self.planning_n:
            raise ValueError(f"planning_m ({self.planning_m}) is below planning_n ({self.planning_n})")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> CepoConfig:
        path = Path(path).expanduser()
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings", hint=_HINT)
        return cls(**data)

    def merged(self, overrides: dict[str, Any] | None) -> CepoConfig:
        """A copy with `overrides` applied; nested steps merge key by key ({"plan": {"max_tokens": 64}})."""
        if not overrides:
            return self
        return type(self)(**_deep_merge(self.model_dump(), overrides))


_HINT = "see cepo/config.py for every setting, its default and its range"

# The published flat names -> (field, step field or None).
_PUBLISHED_KEYS: dict[str, tuple[str, str | None]] = {
    "bestofn_temperature": ("rating", "temperature"),
    "bestofn_max_tokens": ("rating", "max_tokens"),
    "bestofn_rating_type": ("rating_type", None),
    "use_plan_diversity": ("plan_diversity", None),
    **{
        f"planning_{name}_step{step}": (section, field)
        for step, section in enumerate(("plan", "execute", "refine", "final"), start=1)
        for name, field in (("temperature", "temperature"), ("max_tokens", "max_tokens"))
    },
}
_IGNORED_PUBLISHED_KEYS = {"rating_model", "print_output"}  # the rating model is the backend's model


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "config"
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
        elif item["type"] == "value_error":
            message = str(item["ctx"]["error"])
        else:
            message = item["msg"]
        if item["type"] != "extra_forbidden" and "input" in item and not isinstance(item["input"], dict):
            message += f" (got {item['input']!r})"
        problems.append(f"{field}: {message}")
    return "; ".join(problems)
