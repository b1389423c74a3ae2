"""Recipe resolution is pure: explicit fields win, then the champion's, then the defaults."""

from __future__ import annotations

import pytest

from steps.core.errors import ConfigError
from steps.core.settings import Settings, explicit_fields, load_settings
from steps.ml import recipe

CHAMPION = recipe.ChampionRecipe(
    model_name="churn",
    version="3",
    run_id="abc123",
    values={
        "data.target": "default",
        "train.model_kind": "sklearn-hgb",
        "train.max_depth": 3,
        "gate.min_value": 0.8,
    },
)


def test_champion_fills_what_is_not_explicit() -> None:
    settings = load_settings(train={"max_depth": 7})
    resolved = recipe.resolve(settings, frozenset({"train.max_depth"}), CHAMPION)
    effective = resolved.settings
    assert effective.data.target == "default"
    assert effective.train.model_kind == "sklearn-hgb"
    assert effective.train.max_depth == 7  # explicit beats the champion
    assert effective.gate.min_value == 0.8
    assert effective.train.learning_rate == Settings().train.learning_rate  # not in the recipe
    assert resolved.origins["train.max_depth"] == "explicit"
    assert resolved.origins["data.target"] == "champion"
    assert resolved.origins["train.learning_rate"] == "default"
    assert resolved.source == "champion churn v3 (run abc123)"
    assert resolved.describe() == (
        "recipe from champion churn v3 (run abc123); explicit: train.max_depth"
    )


def test_without_champion_the_settings_stand() -> None:
    settings = Settings()
    resolved = recipe.resolve(settings, frozenset(), None)
    assert resolved.settings == settings
    assert set(resolved.origins.values()) == {"default"}
    assert resolved.source == "defaults (no champion)"


def test_data_location_is_not_part_of_a_recipe() -> None:
    values = recipe.recipe_values(load_settings(data={"uri": "/data/x.parquet"}))
    assert "data.uri" not in values
    assert {"data.target", "train.model_kind", "gate.max_regression"} <= set(values)
    document = recipe.resolve(Settings(), frozenset(), CHAMPION).document()
    assert document["values"]["data.target"] == "default"
    assert document["champion_version"] == "3"


def test_a_champion_value_these_settings_reject_names_the_field() -> None:
    broken = CHAMPION.model_copy(update={"values": {"train.max_depth": 99}})
    with pytest.raises(ConfigError, match=r"(?s)churn v3 .* LOOPLINE_TRAIN__MAX_DEPTH"):
        recipe.resolve(Settings(), frozenset(), broken)


def test_explicit_fields_come_from_environment_and_non_empty_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPLINE_TRAIN__MAX_DEPTH", "5")
    given = explicit_fields(data={"target": "", "uri": "x.csv"}, train={"model_kind": None})
    assert {"train.max_depth", "data.uri"} <= given
    assert not {"data.target", "train.model_kind", "gate.min_value"} & given


def test_empty_flags_keep_the_lower_layer() -> None:
    settings = load_settings(data={"target": ""}, gate={"min_value": ""})
    assert settings.data.target == Settings().data.target
    assert settings.gate.min_value == Settings().gate.min_value
