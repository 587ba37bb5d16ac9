"""Which rows train, which select, which test: one deterministic rule for the tabular trainers.

The champion/challenger gate must score a candidate and the champion on rows neither trained
on, long after training, from the same frame. So a split is a pure function of the frame's
rows and a seed: time-ordered when a date column exists (train on the past, test on the
future), else a seeded random split, stratified on a label when one is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

# Columns that order rows in time, most specific first; the first one present is used.
DATE_COLUMNS: tuple[str, ...] = ("evaluation_date", "snapshot_date", "snapshotDate", "date")

_ROW = "__row__"


def time_column(df: pl.DataFrame) -> str | None:
    """The first of :data:`DATE_COLUMNS` that holds dates (or ISO date strings)."""
    for name in DATE_COLUMNS:
        if name not in df.columns:
            continue
        dtype = df.schema[name]
        if dtype.is_temporal() or dtype == pl.String:
            return name
    return None


def _time_rank(df: pl.DataFrame, column: str) -> np.ndarray:
    """Row positions sorted by time, ties in their original order; unparseable dates last."""
    values = df.get_column(column)
    if values.dtype == pl.String:
        values = values.str.to_datetime(strict=False)
    order = (
        pl.DataFrame({"t": values, _ROW: np.arange(df.height)})
        .sort(["t", _ROW], nulls_last=True, maintain_order=True)
        .get_column(_ROW)
    )
    return order.to_numpy()


def _can_stratify(labels: np.ndarray, parts: int) -> bool:
    _, counts = np.unique(labels, return_counts=True)
    return len(counts) > 1 and counts.min() >= parts


def split_positions(
    df: pl.DataFrame,
    fractions: Sequence[float],
    seed: int,
    stratify: str | None = None,
) -> list[np.ndarray]:
    """Row positions of consecutive parts, e.g. ``(0.6, 0.2, 0.2)`` -> train, select, test.

    Time-ordered: each part is later than the one before. Random: the last part is taken first
    with ``train_test_split(test_size=fractions[-1], random_state=seed, stratify=...)``, then the
    rest in turn, so with two parts the split equals scikit-learn's on the same rows and seed.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or any(f <= 0 for f in fractions):
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    n = df.height
    column = time_column(df)
    if column is not None:
        order = _time_rank(df, column)
        bounds = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
        return [np.sort(part) for part in np.split(order, bounds)]

    from sklearn.model_selection import train_test_split  # here: the flows import this module, few need it

    labels = df.get_column(stratify).to_numpy() if stratify and stratify in df.columns else None
    rest = np.arange(n)
    parts: list[np.ndarray] = []
    remaining = 1.0
    for fraction in reversed(fractions[1:]):
        rest_labels = labels[rest] if labels is not None else None
        size = fraction / remaining
        use = rest_labels if rest_labels is not None and _can_stratify(rest_labels, 2) else None
        rest, taken = train_test_split(rest, test_size=size, random_state=seed, stratify=use)
        parts.append(np.sort(taken))
        remaining -= fraction
    parts.append(np.sort(rest))
    return list(reversed(parts))


def unseen(rows: pl.DataFrame, seen: pl.DataFrame, group: str | None = None) -> pl.DataFrame:
    """The ``rows`` a model trained on ``seen`` never saw, so a champion/challenger gate can score
    both models on rows neither trained on.

    With a ``group`` (e.g. the opportunity of a snapshot sequence): rows of groups absent from
    ``seen``. Else, when both frames have a time column: rows later than the last one in ``seen``
    (no later evaluation of a deal the model learned from, no day it was fitted on). Else rows
    whose values appear in no row of ``seen``.
    """
    if group is not None and group in rows.columns and group in seen.columns:
        return rows.filter(~pl.col(group).is_in(seen.get_column(group).unique().implode()))
    column = time_column(rows)
    if column is not None and column in seen.columns and seen.height:
        last = _as_time(seen.get_column(column)).max()
        return rows.filter(_as_time(rows.get_column(column)) > last) if last is not None else rows
    shared = [c for c in rows.columns if c in seen.columns and not c.startswith("__")]
    if not shared or not seen.height:
        return rows
    known = seen.select(shared).hash_rows(seed=0)
    return rows.filter(~rows.select(shared).hash_rows(seed=0).is_in(known.implode()))


def _as_time(values: pl.Series) -> pl.Series:
    return values.str.to_datetime(strict=False) if values.dtype == pl.String else values.cast(pl.Datetime("us"))
