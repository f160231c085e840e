"""Static covariates: per-series attributes (numeric or categorical) as constant input channels.

They come from columns of a long frame that are constant within each series,
or from a separate frame with one row per series id. Numeric attributes are
standardised across the series of the fit data; categorical ones are one-hot
encoded over the categories seen in fit, which the network's first linear
layer turns into an embedding. A category not seen in fit is an error, or an
all-zero code when the user chose ``unknown_static="zeros"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tsformers.data.scaling import safe_scale


def static_table(df: pd.DataFrame, id_col: str, names: list[str], series: list,
                 static_df: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per series (in the order of ``series``), one column per static attribute."""
    table = pd.DataFrame(index=pd.Index(series, dtype=object))
    in_frame = [c for c in names if c in df.columns]
    if in_frame:
        groups = df.groupby(id_col, sort=False)
        varying = groups[in_frame].nunique(dropna=False)
        for name in in_frame:
            bad = varying.index[varying[name] > 1]
            if len(bad):
                row = int(np.flatnonzero((df[id_col] == bad[0]).to_numpy())[0])
                raise ValueError(f"static column '{name}' changes within series '{bad[0]}' (rows from {row}); a static "
                                 f"attribute must be constant per series: use it as a covariate instead.")
        first = groups[in_frame].first()
        table = table.join(first.set_axis(first.index.astype(object)))
    rest = [c for c in names if c not in in_frame]
    if rest:
        if static_df is None:
            raise ValueError(f"static attribute(s) {rest} are neither columns of the frame nor given: pass "
                             f"static_df= with columns ['{id_col}'] + {rest}.")
        missing = [c for c in [id_col] + rest if c not in static_df.columns]
        if missing:
            raise ValueError(f"static_df lacks column(s) {missing}.")
        if static_df[id_col].duplicated().any():
            dup = static_df[id_col][static_df[id_col].duplicated()].iloc[0]
            raise ValueError(f"static_df has several rows for series '{dup}'; give one row per series.")
        table = table.join(static_df.set_index(id_col)[rest].set_axis(static_df[id_col].astype(object)))
    absent = table.index[table[names].isna().any(axis=1)] if names else []
    if len(absent):
        gaps = [c for c in names if pd.isna(table.loc[absent[0], c])]
        raise ValueError(f"series '{absent[0]}' has no value for static attribute(s) {gaps}; give every series a value.")
    return table[names]


@dataclass
class StaticEncoder:
    """Standardise numeric attributes and one-hot encode categorical ones, as fitted on the fit data's series."""

    numeric: dict = field(default_factory=dict)      # name -> [mean, scale]
    categories: dict = field(default_factory=dict)   # name -> sorted category labels (as strings)

    @classmethod
    def fit(cls, table: pd.DataFrame) -> "StaticEncoder":
        enc = cls()
        for name in table.columns:
            column = table[name]
            if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
                values = column.to_numpy(dtype=float)
                scale = safe_scale(values.std(), np.abs(values).max(), len(values))
                enc.numeric[name] = [float(values.mean()), float(scale)]
            else:
                enc.categories[name] = sorted({str(v) for v in column})
        return enc

    @property
    def n_channels(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories.values())

    def transform(self, table: pd.DataFrame, unknown: str = "error") -> np.ndarray:
        """``(n_series, n_channels)``: numeric attributes first, then each categorical attribute's one-hot code."""
        blocks = []
        for name, (mean, scale) in self.numeric.items():
            blocks.append(((table[name].to_numpy(dtype=float) - mean) / scale)[:, None])
        for name, labels in self.categories.items():
            codes = pd.Index(labels).get_indexer(table[name].astype(str))
            if (codes < 0).any() and unknown == "error":
                series = table.index[int(np.flatnonzero(codes < 0)[0])]
                value = table[name].iloc[int(np.flatnonzero(codes < 0)[0])]
                raise ValueError(f"series '{series}' has static {name}={value!r}, a category not seen in fit "
                                 f"({labels}); refit with it, or pass unknown_static='zeros' to encode it as none.")
            blocks.append(np.eye(len(labels) + 1)[codes][:, : len(labels)])  # code -1 -> the all-zero row
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(table), 0))

    def to_dict(self) -> dict:
        return {"numeric": self.numeric, "categories": self.categories}

    @classmethod
    def from_dict(cls, d: dict) -> "StaticEncoder":
        return cls(numeric=d["numeric"], categories=d["categories"])
