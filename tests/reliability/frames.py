"""Small valid training inputs, one per model; each bad-input case breaks one thing in one of them.

Valid on purpose: ``test_bad_inputs_trainers.py`` checks that every one of them passes the same
contract the cases break, so a case fails for its own reason and no other.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

START = dt.date(2024, 1, 1)


def opportunities(n: int = 400, seed: int = 0) -> pl.DataFrame:
    """The prepared.parquet shape of risk scoring and win probability (closed deals, both classes)."""
    rng = np.random.default_rng(seed)
    probability = rng.uniform(0, 1, n)
    idle = rng.integers(0, 60, n)
    activity = rng.poisson(6, n)
    stage = rng.integers(0, 5, n)
    logit = 2.5 * probability - 0.05 * idle + 0.15 * activity - 0.8
    evaluated = [START + dt.timedelta(days=int(d)) for d in np.sort(rng.integers(0, 300, n))]
    return pl.DataFrame(
        {
            "tenant_id": ["tenant-01"] * n,
            "opportunity_id": [f"opp-{i:05d}" for i in range(n)],
            "industry_id": rng.choice(["software", "retail", "finance"], n).tolist(),
            "evaluation_date": evaluated,
            "closed_date": [d + dt.timedelta(days=int(k)) for d, k in zip(evaluated, rng.integers(1, 60, n))],
            "amount": rng.lognormal(10, 1, n),
            "probability": probability,
            "days_to_close": rng.integers(1, 180, n),
            "stage_encoded": stage,
            "industry_encoded": rng.integers(0, 8, n),
            "days_since_last_activity": idle,
            "activity_count_30d": activity,
            "stakeholder_count": rng.integers(1, 8, n),
            "target_risk": np.clip(1 / (1 + np.exp(logit)) + rng.normal(0, 0.03, n), 0, 1),
            "target_win": (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(np.int32),
            "is_closed": np.ones(n, dtype=np.int32),
        }
    )


def trajectory(opportunities_: int = 30, days: int = 60, seed: int = 0) -> pl.DataFrame:
    """Daily snapshots of a few opportunities with one ``target_risk`` each day."""
    rng = np.random.default_rng(seed)
    n = opportunities_ * days
    return pl.DataFrame(
        {
            "opportunityId": [f"opp-{i:03d}" for i in range(opportunities_) for _ in range(days)],
            "snapshotDate": [START + dt.timedelta(days=d) for _ in range(opportunities_) for d in range(days)],
            "risk_score": rng.uniform(0, 1, n),
            "activity_count_30d": rng.poisson(4, n),
            "days_since_last_activity": rng.integers(0, 30, n),
            "target_risk": rng.uniform(0, 1, n),
        }
    )


def revenue(days: int = 180, seed: int = 0) -> pl.DataFrame:
    """A daily (date, revenue) series with a weekly pattern."""
    rng = np.random.default_rng(seed)
    weekly = 100 * np.sin(np.arange(days) / 7 * 2 * np.pi)
    return pl.DataFrame(
        {
            "date": pl.date_range(START, START + dt.timedelta(days=days - 1), "1d", eager=True),
            "revenue": 1000 + weekly + rng.normal(0, 10, days),
        }
    )


def anomalies(n: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({f"x{i}": rng.normal(0, 1, n) for i in range(4)}).with_columns(
        is_anomaly=pl.Series(rng.uniform(0, 1, n) < 0.1).cast(pl.Int32)
    )


def set_row(frame: pl.DataFrame, column: str, row: int, value: object) -> pl.DataFrame:
    """``frame`` with one cell replaced (the column keeps its type where the value allows)."""
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )
