"""The feature contract shared by training and serving.

A :class:`FeatureSpec` is fitted on the training split only and saved next to the model as
``feature_spec.json``. It turns raw rows (numbers, category strings, missing values) into the
float32 matrix the model was trained on: numeric columns as floats, categorical columns as their
code in the training category order, anything missing or unseen as NaN. Training and serving
both call :meth:`FeatureSpec.encode`, so the two can never encode differently.

Only NumPy and pydantic are imported here: this module is on the request path.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SPEC_FILENAME = "feature_spec.json"


class FeatureSpec(BaseModel):
    """Columns the model takes, in order, with the category vocabulary of each categorical."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    numeric: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    order: tuple[str, ...] = Field(description="column order of the model's input matrix")

    @classmethod
    def fit(
        cls, target: str, numeric: Sequence[str], categories: Mapping[str, Iterable[object]]
    ) -> FeatureSpec:
        """Return a spec whose categorical vocabularies are the sorted distinct training values."""
        vocab = {
            name: tuple(sorted({str(v) for v in values if not _is_missing(v)}))
            for name, values in categories.items()
        }
        return cls(
            target=target,
            numeric=tuple(numeric),
            categorical=vocab,
            order=(*numeric, *categories.keys()),
        )

    @property
    def feature_types(self) -> list[str]:
        """XGBoost feature types in input order: ``q`` numeric, ``c`` categorical."""
        return ["c" if name in self.categorical else "q" for name in self.order]

    def encode(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> np.ndarray:
        """Encode column-wise data (``{name: values}``) into a float32 matrix in input order.

        Raises:
            KeyError: naming the first model column absent from ``columns``.
        """
        n_rows = len(next(iter(columns.values()))) if columns else 0
        matrix = np.empty((n_rows, len(self.order)), dtype=np.float32)
        for index, name in enumerate(self.order):
            if name not in columns:
                raise KeyError(name)
            values = columns[name]
            if name in self.categorical:
                matrix[:, index] = self._codes(name, values)
            else:
                matrix[:, index] = np.asarray(
                    [math.nan if v is None else v for v in values]
                    if not isinstance(values, np.ndarray)
                    else values,
                    dtype=np.float32,
                )
        return matrix

    @functools.cached_property
    def _lookups(self) -> dict[str, dict[str, float]]:
        """Category -> code per categorical column, built once per spec (not per request)."""
        return {
            name: {category: float(code) for code, category in enumerate(categories)}
            for name, categories in self.categorical.items()
        }

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode a list of row dicts; see :meth:`encode`."""
        return self.encode({name: [row.get(name) for row in rows] for name in self.order})

    def _codes(self, name: str, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        lookup = self._lookups[name]
        return np.fromiter(
            (math.nan if _is_missing(v) else lookup.get(str(v), math.nan) for v in values),
            dtype=np.float32,
            count=len(values),
        )

    def save(self, directory: Path) -> Path:
        """Write the spec as ``feature_spec.json`` into ``directory`` and return its path."""
        path = directory / SPEC_FILENAME
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> FeatureSpec:
        """Read a spec written by :meth:`save` (a file or the directory holding it)."""
        file = path / SPEC_FILENAME if path.is_dir() else path
        return cls.model_validate_json(file.read_text(encoding="utf-8"))


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
