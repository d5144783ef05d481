"""Method settings: published defaults, YAML files (ours and the published flat format), overrides, errors,
and each method taking its own settings from one mapping of options."""

from __future__ import annotations

from pathlib import Path

import pytest

from cepo.errors import CepoError
from cepo.methods import METHODS, check_all, configure
from cepo.methods.cepo_method import CepoSettings
from cepo.methods.plain import PlainSettings
from cepo.methods.settings import ConfigError, read_options

PUBLISHED_YAML = """\
bestofn_n: 3
bestofn_temperature: 0.1
bestofn_max_tokens: 4096
bestofn_rating_type: "pairwise"
planning_n: 3
planning_m: 6
planning_temperature_step1: 0.55
planning_temperature_step2: 0.25
planning_temperature_step3: 0.1
planning_temperature_step4: 0
planning_max_tokens_step1: 4096
planning_max_tokens_step2: 4096
planning_max_tokens_step3: 4096
planning_max_tokens_step4: 4096
use_plan_diversity: False
rating_model: None
print_output: False
"""


def test_defaults_are_the_measured_loop_at_the_published_temperatures() -> None:
    config = CepoSettings()
    assert (config.bestofn_n, config.planning_n, config.planning_m, config.candidate_cap) == (3, 1, 2, 6)
    assert (config.repair_rounds, config.stop_when, config.rating_type) == (0, "agreed", "majority")
    temperatures = [step.temperature for step in (config.plan, config.execute, config.refine, config.final)]
    assert temperatures == [0.55, 0.25, 0.1, 0.0]
    assert not config.plan_diversity


def test_without_max_candidates_a_run_has_two_waves() -> None:
    assert CepoSettings(bestofn_n=8).candidate_cap == 16
    assert CepoSettings(bestofn_n=8, max_candidates=8).candidate_cap == 8


def test_a_yaml_file_sets_steps_in_part(tmp_path: Path) -> None:
    path = tmp_path / "cepo.yaml"
    path.write_text("bestofn_n: 2\nplan:\n  max_tokens: 64\nrating_type: majority\n")
    config = CepoSettings.of(read_options(path))
    assert (config.bestofn_n, config.rating_type) == (2, "majority")
    assert (config.plan.temperature, config.plan.max_tokens) == (0.55, 64)


def test_a_plan_stops_where_code_starts_unless_told_otherwise() -> None:
    assert CepoSettings().plan.sampling().stop == ["```"]
    assert CepoSettings().execute.sampling().stop == []
    assert CepoSettings(plan={"stop": []}).plan.sampling(seed=3) == CepoSettings().plan.sampling(
        seed=3
    ).model_copy(update={"stop": []})


def test_the_published_flat_yaml_loads(tmp_path: Path) -> None:
    path = tmp_path / "cepo_config.yaml"
    path.write_text(PUBLISHED_YAML)
    config = CepoSettings.of(read_options(path))
    assert [s.max_tokens for s in (config.plan, config.execute, config.refine, config.final)] == [4096] * 4
    assert (config.final.temperature, config.rating.max_tokens, config.rating_type) == (0.0, 4096, "pairwise")


def test_merged_overrides_one_request_and_leaves_the_base_alone() -> None:
    base = CepoSettings(execute={"max_tokens": 100})
    merged = base.merged({"execute": {"temperature": 0.5}, "bestofn_n": 2})
    assert (merged.execute.temperature, merged.execute.max_tokens, merged.bestofn_n) == (0.5, 100, 2)
    assert (base.execute.temperature, base.bestofn_n) == (0.25, 3)
    assert base.merged(None) is base


def test_each_method_takes_its_own_settings_from_one_mapping() -> None:
    options = {"k": 9, "bestofn_n": 2, "sample": {"max_tokens": 50}, "seed": 4}
    plain, sampled, cepo = (configure(METHODS[name], options) for name in ("plain", "best-of-n", "cepo"))
    assert isinstance(plain, PlainSettings) and not hasattr(plain, "k")
    assert (plain.sample.max_tokens, plain.seed) == (50, 4)
    assert (sampled.k, cepo.bestofn_n, cepo.seed) == (9, 2, 4)  # type: ignore[attr-defined]


def test_a_setting_no_method_knows_is_an_error_even_where_another_method_is_asked() -> None:
    with pytest.raises(ConfigError, match="bestofn_m: unknown setting"):
        configure(METHODS["plain"], {"bestofn_m": 3})
    with pytest.raises(ConfigError, match="planning_n"):
        check_all({"planning_n": 0})  # a bad value for one method fails the whole file


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"bestofn_n": 0}, "bestofn_n: Input should be greater than or equal to 1 (got 0)"),
        ({"plan": {"temperature": 7}}, "plan.temperature"),
        ({"final": {"max_tokens": "lots"}}, "final.max_tokens"),
        ({"rating_type": "vibes"}, "rating_type"),
        ({"planning_n": 4, "planning_m": 3}, "planning_m (3) is below planning_n (4)"),
        ({"bestofn_m": 3}, "bestofn_m: unknown setting"),
        ({"plan": 3}, "plan:"),
    ],
)
def test_an_invalid_value_is_a_cepo_error_naming_the_field(settings: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configure(METHODS["cepo"], settings)
    assert named in str(caught.value)
    assert isinstance(caught.value, CepoError) and caught.value.hint


@pytest.mark.parametrize(
    ("text", "problem"),
    [("plan: [unclosed", "not valid YAML"), ("- 1\n- 2\n", "must be a mapping"), ("k: -1\n", "k:")],
)
def test_a_bad_yaml_file_is_reported(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        check_all(read_options(path))  # type: ignore[arg-type]


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_options(tmp_path / "absent.yaml")
