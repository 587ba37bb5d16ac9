"""Counting closed deals per industry: the rule that decides which industries get a model."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from models import segments


def test_counts_closed_real_deals_once_and_applies_the_minimum() -> None:
    frame = pl.DataFrame({
        "opportunity_id": ["a", "a", "b", "c", "d", "e", "f"],
        "industry_id": ["x", "x", "x", "y", "y", "x", None],
        "closed_date": [date(2024, 1, 1)] * 4 + [None, date(2024, 1, 2), date(2024, 1, 3)],
        "is_synthetic": [0, 0, 0, 0, 0, 1, 0],
    })
    assert segments.closed_deals_by_industry(frame) == {"x": 2, "y": 1}  # d is open, e synthetic, f has no industry
    assert segments.eligible_industries(frame, 2) == ["x"]
    assert segments.eligible_industries(frame, 1) == ["x", "y"]
    with pytest.raises(ValueError, match="industry_id"):
        segments.closed_deals_by_industry(frame.drop("industry_id"))
