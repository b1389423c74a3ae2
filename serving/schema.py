"""Request and response models of the service, generated from the model's feature spec.

The request row model is built from :class:`~serving.features.FeatureSpec` when the service is
imported, so the API's validation, its OpenAPI document and the training features cannot drift
apart: numeric features are ``number | null`` (null means missing; NaN, infinities and finite
numbers beyond the float32 range the model computes in are refused), categorical features are
``string | null`` of at most ``max_string_chars`` characters (an unseen category is scored as
missing), every feature must be present, and an unknown field is refused by name.

BentoML flattens ``anyOf: [T, null]`` to ``T`` in the OpenAPI document it serves (3.0), which
would say a nullable field is not; every nullable field here is described the OpenAPI 3.0 way
(``nullable: true``) instead.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from serving.features import FeatureSpec

# Columns every inference-log row starts with; a feature may not reuse these names.
RESERVED_NAMES = ("row_id", "timestamp", "model_name", "model_version", "prediction")
_SHOWN_CATEGORIES = 20
DEFAULT_MAX_STRING_CHARS = 256
FLOAT32_MAX = float(np.finfo(np.float32).max)


def openapi_nullable(schema: dict[str, Any]) -> None:
    """Rewrite pydantic's ``anyOf: [T, {"type": "null"}]`` as OpenAPI 3.0's ``T, nullable``."""
    branches = schema.pop("anyOf", None)
    if branches is None:
        return
    (kept,) = [branch for branch in branches if branch.get("type") != "null"]
    schema.update(kept)
    schema["nullable"] = True


def _fits_float32(value: float | None) -> float | None:
    if value is not None and abs(value) > FLOAT32_MAX:
        raise ValueError(f"outside the float32 range: expected |x| <= {FLOAT32_MAX:.8g}")
    return value


Float32 = Annotated[float | None, AfterValidator(_fits_float32)]


class Prediction(BaseModel):
    """The model's answer for one row."""

    model_config = ConfigDict(frozen=True)

    probability: float = Field(description="probability of the positive class")
    label: int = Field(description="1 when probability >= 0.5, else 0")
    model_version: str
    row_id: str = Field(description="uuid4 hex; the row's key in the inference log")


class ServiceMetadata(BaseModel):
    """Which model answers, where it came from, and which bento serves it."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    model_version: str
    alias: str | None = Field(json_schema_extra=openapi_nullable)
    run_id: str
    data_hash: str
    git_commit: str
    bento_tag: str | None = Field(
        description="name:version of the bento; null from source",
        json_schema_extra=openapi_nullable,
    )


def row_model(
    spec: FeatureSpec, max_string_chars: int = DEFAULT_MAX_STRING_CHARS
) -> type[BaseModel]:
    """Build the pydantic model of one request row from ``spec``.

    Fields are named ``f0``, ``f1``, ... internally and take the feature names as aliases, so any
    column name (spaces, dashes, Python keywords) is a valid field and validation errors name it.

    Returns:
        A model class whose fields follow ``spec.order``.

    Raises:
        ValueError: if a feature is named like one of the inference log's own columns.
    """
    clashes = sorted(set(spec.order) & set(RESERVED_NAMES))
    if clashes:
        raise ValueError(f"feature names {clashes} clash with the inference log's columns")
    fields: dict[str, Any] = {}
    for index, name in enumerate(spec.order):
        if name in spec.categorical:
            categories = spec.categorical[name]
            fields[f"f{index}"] = (
                str | None,
                _categorical_field(name, categories, max_string_chars),
            )
        else:
            fields[f"f{index}"] = (
                Float32,
                Field(
                    alias=name,
                    strict=True,
                    allow_inf_nan=False,
                    description="a finite number within the float32 range, or null when missing",
                    json_schema_extra=_numeric_schema,
                ),
            )
    model: type[BaseModel] = create_model(
        "Row",
        __config__=ConfigDict(extra="forbid", frozen=True, populate_by_name=False),
        __doc__="One row of features, as the model was trained on.",
        **fields,
    )
    return model


def _numeric_schema(schema: dict[str, Any]) -> None:
    openapi_nullable(schema)
    schema["minimum"] = -FLOAT32_MAX
    schema["maximum"] = FLOAT32_MAX


def _categorical_field(name: str, categories: tuple[str, ...], max_chars: int) -> Any:
    shown = ", ".join(categories[:_SHOWN_CATEGORIES])
    more = f", ... ({len(categories)} in all)" if len(categories) > _SHOWN_CATEGORIES else ""
    return Field(
        alias=name,
        strict=True,
        max_length=max_chars,
        description=f"one of {shown}{more}; null or an unseen value is scored as missing",
        json_schema_extra=openapi_nullable,
    )


def row_values(row: BaseModel) -> dict[str, Any]:
    """Return a validated row as ``{feature name: value}``, the form the encoder takes."""
    return row.model_dump(by_alias=True)
