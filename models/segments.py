"""Which industries have enough closed deals for a model of their own.

Sales products that segment a model (Salesforce Einstein opportunity scoring, for one) train a
segment's own model only where it has enough closed deals, and answer every other segment with the
global model. Pure polars over a prepared training frame, so the flows, a notebook and a benchmark
count the same way.
"""

from __future__ import annotations

import polars as pl

from salesrisk import catalog

CLOSED_DATE = "closed_date"
OPPORTUNITY = "opportunity_id"


def closed_deals_by_industry(frame: pl.DataFrame) -> dict[str, int]:
    """Industry id -> closed deals (won and lost together) in ``frame``, largest first.

    A deal is closed when its ``closed_date`` is set (every row when the frame has no such column);
    a deal counts once however many of its rows the frame holds; synthetic top-up rows never count."""
    if catalog.INDUSTRY_ID not in frame.columns:
        raise ValueError(
            f"training frame has no {catalog.INDUSTRY_ID!r} column (columns: {', '.join(frame.columns)}); "
            "industry models need each row's industry"
        )
    closed = frame.filter(pl.col(CLOSED_DATE).is_not_null()) if CLOSED_DATE in frame.columns else frame
    if catalog.IS_SYNTHETIC in closed.columns:  # rows preparation topped up with are no one's deals
        closed = closed.filter(~pl.col(catalog.IS_SYNTHETIC).cast(pl.Boolean).fill_null(False))
    deals = pl.col(OPPORTUNITY).n_unique() if OPPORTUNITY in closed.columns else pl.len()
    counts = (
        closed.filter(pl.col(catalog.INDUSTRY_ID).is_not_null())
        .group_by(pl.col(catalog.INDUSTRY_ID).cast(pl.String))
        .agg(deals.alias("deals"))
        .sort(["deals", catalog.INDUSTRY_ID], descending=[True, False])
    )
    return dict(zip(counts.get_column(catalog.INDUSTRY_ID).to_list(), counts.get_column("deals").to_list()))


def eligible_industries(frame: pl.DataFrame, min_closed_deals: int) -> list[str]:
    """The industries with at least ``min_closed_deals`` closed deals, largest first."""
    if min_closed_deals < 1:
        raise ValueError(f"min_closed_deals must be >= 1, got {min_closed_deals}")
    return [industry for industry, n in closed_deals_by_industry(frame).items() if n >= min_closed_deals]
