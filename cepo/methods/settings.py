"""Settings of the reasoning methods: each method's own validated pydantic model, built from one mapping of
options (a YAML file, a request's `cepo` field) that may hold the settings of every method.

`RunSettings` holds what every run has (the question's kind, the seed, the sandbox's time); each method
adds its own fields in its own file. An option that no method knows is an error; one that belongs to
another method is left to that method, so one config file serves all of them, and a method's eval results
are keyed by its own settings alone.

The budgets are sized for SmolLM2-class models on a CPU; raise them for larger ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cepo.backends.base import Sampling
from cepo.errors import CepoError

RatingType = Literal["absolute", "pairwise", "majority", "execution"]
TaskSetting = Literal["auto", "code", "number", "choice", "yesno", "open"]
Options = dict[str, Any]
S = TypeVar("S", bound="RunSettings")


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


class RunSettings(BaseModel):
    """What every method's run has; a method's settings model subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Other names this model reads, mapped onto its fields before validation (see `_renamed`).
    ALIASES: ClassVar[dict[str, tuple[str, str | None]]] = {}
    IGNORED: ClassVar[frozenset[str]] = frozenset()  # names it accepts and drops

    task: TaskSetting = Field("auto", description="question kind; auto guesses it from the question")
    seed: int | None = Field(None, description="base seed; every branch of a run gets its own")
    sandbox_seconds: float = Field(5.0, gt=0.0, le=600.0, description="wall limit of one code run")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise ConfigError(f"invalid config: {_describe(error)}", hint=_HINT) from None

    @classmethod
    def known(cls) -> set[str]:
        """Every top-level option name this model reads."""
        return set(cls.model_fields) | set(cls.ALIASES) | set(cls.IGNORED)

    @classmethod
    def of(cls: type[S], options: Options | None) -> S:
        """The settings `options` give this model, from the options it knows (the rest are other
        methods')."""
        return cls(**{name: value for name, value in (options or {}).items() if name in cls.known()})

    @model_validator(mode="before")
    @classmethod
    def _complete_steps(cls, data: Any) -> Any:
        """Accept the aliases, and fill a step given in part from that step's defaults."""
        if not isinstance(data, dict):
            return data
        data = {key: value for key, value in data.items() if key not in cls.IGNORED}
        for old, (name, field) in cls.ALIASES.items():
            if old in data:
                value = data.pop(old)
                data[name] = value if field is None else {**data.get(name, {}), field: value}
        for name, info in cls.model_fields.items():
            if isinstance(info.default, StepConfig) and isinstance(data.get(name), dict):
                data[name] = {**info.default.model_dump(), **data[name]}
        return data

    def merged(self: S, overrides: Options | None) -> S:
        """A copy with `overrides` (all of them this model's) applied; nested steps merge key by key
        ({"plan": {"max_tokens": 64}})."""
        if not overrides:
            return self
        return type(self)(**merge_options(self.model_dump(), overrides))

    def steps(self) -> dict[str, StepConfig]:
        return {name: value for name, value in self if isinstance(value, StepConfig)}

    def fan_out(self) -> dict[str, int]:
        """How many branches a run with these settings can keep decoding at once, in each of its phases,
        keyed by the setting that sizes the phase (what a server names when the count is over its limit).
        Empty: one branch at a time."""
        return {}


def check_options(options: Options, models: Iterable[type[RunSettings]]) -> Options:
    """`options`, once every name in it is one that some of `models` reads, and each model takes its share."""
    models = list(models)
    known = set().union(*(model.known() for model in models))
    unknown = sorted(set(options) - known)
    if unknown:
        problems = "; ".join(f"{name}: unknown setting" for name in unknown)
        raise ConfigError(f"invalid config: {problems}", hint=_HINT)
    for model in models:
        model.of(options)
    return options


def read_options(path: str | Path) -> Options | list[Options]:
    """The options of a YAML file: one mapping, or (for an eval's sweep) a list of them."""
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    entries = data if isinstance(data, list) else [data]
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigError(f"config file {path}: each setting must be a mapping, got {entry!r}")
    return data


def merge_options(base: Options, overrides: Options | None) -> Options:
    """`base` with `overrides` applied, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_options(merged[key], value)
        else:
            merged[key] = value
    return merged


_HINT = "each method's settings model (in its file under cepo/methods/) lists its settings and their ranges"


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
