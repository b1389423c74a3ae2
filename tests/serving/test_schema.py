"""Tests for serving/schema.py: the request row model generated from a feature spec."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from serving.features import FeatureSpec
from serving.schema import FLOAT32_MAX, row_model, row_values

SPEC = FeatureSpec(
    target="churned",
    numeric=("tenure months", "class"),
    categorical={"plan-type": ("basic", "pro")},
    order=("tenure months", "class", "plan-type"),
)


def _error_locations(row: dict[str, object]) -> list[tuple[object, ...]]:
    with pytest.raises(ValidationError) as caught:
        row_model(SPEC).model_validate(row)
    return [tuple(error["loc"]) for error in caught.value.errors()]


def test_any_column_name_is_a_field_and_round_trips() -> None:
    row = {"tenure months": 3, "class": None, "plan-type": "pro"}
    validated = row_model(SPEC).model_validate(row)
    assert row_values(validated) == {"tenure months": 3.0, "class": None, "plan-type": "pro"}


def test_unseen_category_is_accepted_and_encodes_as_missing() -> None:
    validated = row_model(SPEC).model_validate(
        {"tenure months": 1, "class": 2, "plan-type": "gold"}
    )
    encoded = SPEC.encode_rows([row_values(validated)])
    assert math.isnan(encoded[0, 2])
    assert encoded[0, 0] == 1.0


@pytest.mark.parametrize(
    "row, location",
    [
        ({"class": 1, "plan-type": "pro"}, ("tenure months",)),
        ({"tenure months": 1, "class": 1, "plan-type": "pro", "extra": 1}, ("extra",)),
        ({"tenure months": "1", "class": 1, "plan-type": "pro"}, ("tenure months",)),
        ({"tenure months": True, "class": 1, "plan-type": "pro"}, ("tenure months",)),
        ({"tenure months": math.nan, "class": 1, "plan-type": "pro"}, ("tenure months",)),
        ({"tenure months": 1, "class": math.inf, "plan-type": "pro"}, ("class",)),
        ({"tenure months": 1, "class": 1, "plan-type": 3}, ("plan-type",)),
    ],
)
def test_bad_rows_are_refused_naming_the_field(
    row: dict[str, object], location: tuple[object, ...]
) -> None:
    assert _error_locations(row) == [location]


def test_openapi_schema_lists_features_by_name_and_type() -> None:
    schema = row_model(SPEC).model_json_schema()
    assert list(schema["properties"]) == ["tenure months", "class", "plan-type"]
    assert schema["required"] == ["tenure months", "class", "plan-type"]
    assert schema["additionalProperties"] is False
    numeric = schema["properties"]["class"]
    assert (numeric["type"], numeric["nullable"]) == ("number", True)  # OpenAPI 3.0's null
    assert numeric["maximum"] == -numeric["minimum"] == FLOAT32_MAX
    assert schema["properties"]["plan-type"]["maxLength"] == 256
    assert "basic, pro" in schema["properties"]["plan-type"]["description"]


def test_feature_named_like_a_log_column_is_refused() -> None:
    spec = FeatureSpec(target="y", numeric=("prediction",), order=("prediction",))
    with pytest.raises(ValueError, match="prediction"):
        row_model(spec)


@pytest.mark.parametrize(
    "row, location, kind",
    [
        ({"tenure months": 1e300, "class": 1, "plan-type": "pro"}, ("tenure months",), "float32"),
        ({"tenure months": 1, "class": -4e38, "plan-type": "pro"}, ("class",), "float32"),
        ({"tenure months": 1, "class": 1, "plan-type": "p" * 257}, ("plan-type",), "at most 256"),
    ],
)
def test_numbers_beyond_float32_and_long_strings_are_refused(
    row: dict[str, object], location: tuple[object, ...], kind: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        row_model(SPEC).model_validate(row)
    (error,) = caught.value.errors()
    assert tuple(error["loc"]) == location
    assert kind in error["msg"]


def test_the_float32_bounds_themselves_and_a_shorter_limit() -> None:
    row = {"tenure months": FLOAT32_MAX, "class": -FLOAT32_MAX, "plan-type": "pro"}
    assert row_values(row_model(SPEC).model_validate(row))["class"] == -FLOAT32_MAX
    with pytest.raises(ValidationError, match="at most 2 characters"):
        row_model(SPEC, max_string_chars=2).model_validate(row)
