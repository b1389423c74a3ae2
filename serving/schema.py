"""Request and response models of the service, generated from the model's feature spec.

The request row model is built from :class:`~serving.features.FeatureSpec` when the service is
imported, so the API's validation, its OpenAPI document and the training features cannot drift
apart: numeric features are ``number | null`` (null means missing; NaN and infinities are
refused), categorical features are ``string | null`` (an unseen category is scored as missing),
every feature must be present, and an unknown field is refused by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from serving.features import FeatureSpec

# Columns every inference-log row starts with; a feature may not reuse these names.
RESERVED_NAMES = ("row_id", "timestamp", "model_name", "model_version", "prediction")
_SHOWN_CATEGORIES = 20


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
    alias: str | None
    run_id: str
    data_hash: str
    git_commit: str
    bento_tag: str | None = Field(description="name:version of the bento; null from source")


def row_model(spec: FeatureSpec) -> type[BaseModel]:
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
            fields[f"f{index}"] = (str | None, _categorical_field(name, spec.categorical[name]))
        else:
            fields[f"f{index}"] = (
                float | None,
                Field(
                    alias=name,
                    strict=True,
                    allow_inf_nan=False,
                    description="a finite number, or null when missing",
                ),
            )
    model: type[BaseModel] = create_model(
        "Row",
        __config__=ConfigDict(extra="forbid", frozen=True, populate_by_name=False),
        __doc__="One row of features, as the model was trained on.",
        **fields,
    )
    return model


def _categorical_field(name: str, categories: tuple[str, ...]) -> Any:
    shown = ", ".join(categories[:_SHOWN_CATEGORIES])
    more = f", ... ({len(categories)} in all)" if len(categories) > _SHOWN_CATEGORIES else ""
    return Field(
        alias=name,
        strict=True,
        description=f"one of {shown}{more}; null or an unseen value is scored as missing",
    )


def row_values(row: BaseModel) -> dict[str, Any]:
    """Return a validated row as ``{feature name: value}``, the form the encoder takes."""
    return row.model_dump(by_alias=True)
