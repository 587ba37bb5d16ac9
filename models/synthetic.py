"""Synthetic sales lake: every source table of docs/data-lake-layout.md from one generative model.

``python -m models.synthetic --output-path URI [--n-opportunities N] [--pct-closed F]
[--tenants N] [--start DATE --end DATE] [--seed S] [--append-days N]``
(the runbook's ``generate_synthetic_opportunities.py``).

Why it is built this way: each day's cohort of new opportunities is simulated over its whole
life with a random generator keyed by (seed, creation day), then cut to the requested dates. So
the same seed gives the same bytes, and appending N days to a lake gives the rows one longer run
would have given for those days (the backfill flow relies on that). The generative model, with
its ground truth kept under ``_truth/``, is described in docs/data-lake-layout.md section 4.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta

import numpy as np
import polars as pl

from models import contracts
from salesrisk import catalog, storage

log = logging.getLogger("salesrisk.synthetic")

DEFAULT_END = date(2025, 12, 31)
DEFAULT_START = date(2024, 1, 1)  # two full years: weekly and yearly seasonality are learnable
SOURCE_TABLES: tuple[str, ...] = (
    catalog.RISK_EVALUATIONS,
    catalog.ML_OUTCOMES,
    catalog.RISK_SNAPSHOTS,
    catalog.REVENUE_DAILY,
)
TABLES: tuple[str, ...] = (*SOURCE_TABLES, catalog.TRUTH)
MANIFEST = "generator.json"  # under _truth/: what append_days needs to continue the lake
PARTITION_KEYS = ("tenant_id", "partition_date")

# (industry_id, median amount, shift of the win logit, share of opportunities)
INDUSTRIES: tuple[tuple[str, float, float, float], ...] = (
    ("software", 42_000, 0.25, 0.22),
    ("healthcare", 65_000, -0.15, 0.14),
    ("finance", 90_000, -0.30, 0.14),
    ("retail", 18_000, 0.35, 0.14),
    ("manufacturing", 55_000, 0.00, 0.12),
    ("energy", 120_000, -0.45, 0.06),
    ("education", 15_000, 0.15, 0.09),
    ("government", 150_000, -0.55, 0.09),
)
# Industry-specific drivers of the win logit: (price sensitivity, committee buying, engagement),
# each a coefficient on a driver scaled to about unit spread: the deal's log amount against its
# industry's median / 0.8, log(stakeholders / 2.5) / 0.4, and the deal's own activity level
# (log rate + 1.25) / 0.55. Real B2B data works this way: a large ticket hurts more where buyers
# are price-sensitive, regulated buyers close by consensus, transactional sales live on
# engagement. Each effect is modest next to the latent quality (1.5 per sd) and acts through
# features every model sees (amount, stakeholder_count, activity); the global model can learn it
# only as an interaction with industry_encoded.
INDUSTRY_DRIVERS: dict[str, tuple[float, float, float]] = {
    "software": (0.0, -0.25, 0.45),  # product-led: active champions win, big committees stall
    "healthcare": (0.0, 0.45, 0.0),  # clinical, IT and procurement must all sign
    "finance": (-0.35, 0.3, 0.0),  # compliance review of large tickets; consensus
    "retail": (-0.45, 0.0, 0.3),  # price-sensitive, fast, engagement-driven
    "manufacturing": (0.0, 0.0, 0.4),  # technical evaluation: engaged deals win
    "energy": (-0.3, 0.0, 0.0),  # capital budgets: size is scrutinised
    "education": (-0.4, 0.0, 0.0),  # fixed budgets
    "government": (0.0, 0.4, 0.0),  # formal committees decide
}
OPEN_STAGES = ("prospecting", "qualification", "proposal", "negotiation", "commit")
STAGES = (*OPEN_STAGES, "closed_won", "closed_lost")
STAGE_PROBABILITY = np.array([0.10, 0.25, 0.45, 0.65, 0.85])
EVALUATION_EVERY = 7  # days between risk evaluations of an open opportunity
MAX_LIFE = 240  # longest sales cycle / active period in days; bounds what append_days re-simulates
ANOMALY_RATE = 0.03  # share of open-opportunity evaluations with an injected anomaly
ACTIVITY_WINDOW = 30
RISK_PHI = 0.93  # day-to-day persistence of the risk score's noise (AR(1))
RISK_NOISE_SD = 0.4  # its stationary standard deviation on the logit scale
_STREAM_OPPORTUNITIES = 1
_STREAM_REVENUE = 2
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class LakeSpec:
    """Everything that determines a lake's rows; stored as _truth/generator.json."""

    seed: int
    start: date
    end: date
    # opportunities per day as the exact fraction n_opportunities / days of the first run
    opportunities: int
    days: int
    pct_closed: float
    tenants: int
    tables: tuple[str, ...]

    def to_json(self) -> bytes:
        data = {**asdict(self), "start": self.start.isoformat(), "end": self.end.isoformat()}
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LakeSpec:
        data = json.loads(raw)
        data["start"], data["end"] = date.fromisoformat(data["start"]), date.fromisoformat(data["end"])
        data["tables"] = tuple(data["tables"])
        return cls(**data)

    def cohort_size(self, day: date) -> int:
        """New opportunities on ``day``: exact integer spread of the daily rate, no drift."""
        i = (day - self.start).days
        return (i + 1) * self.opportunities // self.days - i * self.opportunities // self.days

    def tenant_ids(self) -> list[str]:
        return [f"tenant-{j + 1:02d}" for j in range(self.tenants)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ordinal(day: date) -> int:
    return (day - _EPOCH).days


# --- simulation -----------------------------------------------------------------------------------


def _tenant_weights(tenants: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, tenants + 1)
    return weights / weights.sum()


def _tenant_shift(tenants: int) -> np.ndarray:
    return 0.25 * np.sin(1.7 * np.arange(tenants))


def _cohort(spec: LakeSpec, day: date) -> dict[str, np.ndarray] | None:
    """One day's new opportunities over their whole lives. Draw order is fixed: never reorder."""
    n = spec.cohort_size(day)
    if n <= 0:
        return None
    rng = np.random.default_rng([spec.seed, _STREAM_OPPORTUNITIES, _ordinal(day)])
    medians = np.array([i[1] for i in INDUSTRIES])
    shifts = np.array([i[2] for i in INDUSTRIES])
    shares = np.array([i[3] for i in INDUSTRIES])
    coefficients = np.array([INDUSTRY_DRIVERS[i[0]] for i in INDUSTRIES])
    tenant = np.searchsorted(np.cumsum(_tenant_weights(spec.tenants))[:-1], rng.random(n), side="right")
    industry = np.searchsorted(np.cumsum(shares / shares.sum())[:-1], rng.random(n), side="right")
    quality = rng.standard_normal(n)
    log_amount = np.log(medians[industry]) + 0.25 * quality + 0.8 * rng.standard_normal(n)
    closes = rng.random(n) < spec.pct_closed
    cycle = np.clip(np.round(np.exp(np.log(45) - 0.15 * quality + 0.45 * rng.standard_normal(n))), 10, MAX_LIFE)
    active = rng.integers(60, MAX_LIFE + 1, size=n)
    forecast_noise = rng.standard_normal(n)
    won_u = rng.random(n)  # the outcome's uniform; the outcome itself needs the drivers below
    stakeholders = 1 + rng.poisson(np.exp(0.35 + 0.35 * quality))
    activity_rate = np.exp(-1.25 + 0.45 * quality + 0.3 * rng.standard_normal(n))
    relative_amount = log_amount - np.log(medians[industry])
    drivers = np.stack([relative_amount / 0.8, np.log(stakeholders / 2.5) / 0.4, (np.log(activity_rate) + 1.25) / 0.55], axis=1)
    logit = (
        -0.35
        + 1.5 * quality
        + shifts[industry]
        + _tenant_shift(spec.tenants)[tenant]
        - 0.3 * relative_amount
        + np.einsum("ij,ij->i", coefficients[industry], drivers)
    )
    p_true = _sigmoid(logit)
    won = won_u < p_true
    optimism = 0.06 * rng.standard_normal(n)
    stage_shift = 0.35 * rng.standard_normal(n)
    life = np.where(closes, cycle, active).astype(np.int64)
    expected = np.where(closes, cycle * np.exp(0.25 * forecast_noise), 45 * np.exp(0.3 * forecast_noise))
    expected = np.clip(np.round(expected), 7, 365)

    rows = np.repeat(np.arange(n), life)
    offset = np.arange(life.sum()) - np.repeat(np.cumsum(life) - life, life)
    progress = offset / life[rows]
    rate = activity_rate[rows] * np.where(closes[rows], np.exp(0.6 * quality[rows] * progress), np.exp(-1.8 * progress))
    activity = rng.poisson(rate)
    risk_noise = rng.standard_normal(life.sum())
    slots = (life + EVALUATION_EVERY - 1) // EVALUATION_EVERY
    anomaly_u = rng.random(slots.sum())
    anomaly_kind = rng.integers(0, 5, size=slots.sum())
    anomaly_size = rng.random(slots.sum())
    return {
        "created": np.full(n, _ordinal(day)),
        "index": np.arange(n),
        "tenant": tenant,
        "industry": industry,
        "quality": quality,
        "amount": np.round(np.exp(log_amount), 2),
        "closes": closes,
        "cycle": cycle.astype(np.int64),
        "life": life,
        "expected": expected.astype(np.int64),
        "logit": logit,
        "p_true": p_true,
        "won": won,
        "stakeholders": stakeholders,
        "optimism": optimism,
        "stage_shift": stage_shift,
        "slots": slots,
        "activity": activity,
        "risk_noise": risk_noise,
        "anomaly_u": anomaly_u,
        "anomaly_kind": anomaly_kind,
        "anomaly_size": anomaly_size,
    }


def _simulate(spec: LakeSpec, first: date, last: date) -> dict[str, np.ndarray] | None:
    """Cohorts created from ``first`` to ``last`` (inclusive), concatenated."""
    cohorts = []
    day = first
    while day <= last:
        cohort = _cohort(spec, day)
        if cohort is not None:
            cohorts.append(cohort)
        day += timedelta(days=1)
    if not cohorts:
        return None
    return {key: np.concatenate([c[key] for c in cohorts]) for key in cohorts[0]}


def _ar1(innovations: np.ndarray, starts: np.ndarray, life: np.ndarray) -> np.ndarray:
    """x[t] = phi * x[t-1] + e[t] within each opportunity, one vectorised step per day of life."""
    x = innovations.copy()
    order = np.argsort(-life, kind="stable")  # longest lives first: the open ones are a prefix
    longest_first, first_rows = -life[order], starts[order]
    for day in range(1, int(life.max(initial=0))):
        rows = first_rows[: int(np.searchsorted(longest_first, -day, side="left"))] + day  # life > day
        x[rows] += RISK_PHI * x[rows - 1]
    return x


def _daily(sim: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per opportunity-day state while open: stage, activity, recency, risk score."""
    life = sim["life"]
    n_days = int(life.sum())
    starts = np.cumsum(life) - life
    per_day = lambda values: np.repeat(values, life)  # noqa: E731 - one opportunity value per day
    opp = per_day(np.arange(life.size))
    index = np.arange(n_days)
    offset = index - per_day(starts)
    activity = sim["activity"]
    cum = np.cumsum(activity)
    before = per_day(cum[starts] - activity[starts])  # activity before each opportunity's first day
    lagged = np.where(offset >= ACTIVITY_WINDOW, cum[np.maximum(index - ACTIVITY_WINDOW, 0)], before)
    count_30d = cum - lagged
    marked = np.where((activity > 0) | (offset == 0), index, 0)
    since_last = index - np.maximum.accumulate(marked)

    closes = per_day(sim["closes"])
    pace = per_day(np.where(sim["closes"], 1.0 / sim["cycle"], 0.4 / sim["expected"]))  # stalled deals crawl
    stage = np.clip(np.floor(5 * offset * pace + per_day(sim["stage_shift"])), 0, 4).astype(np.int64)

    # risk: the latent path drifts from 0.5 towards 1 - p_true as the deal reveals itself; stalled
    # deals (never closing) go cold. The observed score adds AR(1) noise and activity recency.
    known = (1.0 - np.exp(-np.arange(MAX_LIFE + 1) / 30.0))[offset]  # a table lookup, not 6M exps
    cold = np.where(closes, 0.0, 1.5 * offset / per_day(life))
    true_logit = -per_day(sim["logit"]) * known + cold
    ar = _ar1(sim["risk_noise"] * (RISK_NOISE_SD * np.sqrt(1 - RISK_PHI**2)), starts, life)
    observed = true_logit + ar + 0.035 * (since_last - 4)
    return {
        "opp": opp,
        "offset": offset,
        "day": per_day(sim["created"]) + offset,
        "count_30d": count_30d,
        "since_last": since_last,
        "stage": stage,
        "true_risk": np.round(_sigmoid(true_logit), 4),
        "risk_score": np.round(_sigmoid(observed), 4),
    }


# --- tables -------------------------------------------------------------------------------------


_KEYS = {"tenant_id": pl.String, "partition_date": pl.Date, "opportunity_id": pl.String}
EVALUATION_SCHEMA: dict[str, pl.DataType] = {
    **_KEYS,
    "evaluation_date": pl.Date,
    "industry_id": pl.String,
    "stage": pl.String,
    "stage_encoded": pl.Int32,
    "industry_encoded": pl.Int32,
    "amount": pl.Float64,
    "probability": pl.Float64,
    "days_to_close": pl.Int32,
    "days_since_last_activity": pl.Int32,
    "activity_count_30d": pl.Int32,
    "stakeholder_count": pl.Int32,
    "risk_score": pl.Float64,
    catalog.ANOMALY_LABEL: pl.Int32,
}
OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    **_KEYS,
    "outcome": pl.String,
    catalog.WIN_TARGET: pl.Int32,
    "closed_date": pl.Date,
    "close_amount": pl.Float64,
}
SNAPSHOT_SCHEMA: dict[str, pl.DataType] = {
    **_KEYS,
    "snapshot_date": pl.Date,
    "risk_score": pl.Float64,
    "activity_count_30d": pl.Int32,
    "days_since_last_activity": pl.Int32,
}
REVENUE_SCHEMA: dict[str, pl.DataType] = {
    "tenant_id": pl.String,
    "partition_date": pl.Date,
    "date": pl.Date,
    "revenue": pl.Float64,
    "pipeline_value": pl.Float64,
}
TRUTH_OPPORTUNITY_SCHEMA: dict[str, pl.DataType] = {
    **_KEYS,
    "created_date": pl.Date,
    "industry_id": pl.String,
    "amount": pl.Float64,
    "quality": pl.Float64,
    "true_win_probability": pl.Float64,
    "closes": pl.Boolean,
    "close_date": pl.Date,
    "won": pl.Boolean,
}
TRUTH_EVALUATION_SCHEMA: dict[str, pl.DataType] = {**_KEYS, "evaluation_date": pl.Date, "true_risk": pl.Float64}
TRUTH_OPPORTUNITIES = "opportunities"
TRUTH_EVALUATIONS = catalog.RISK_EVALUATIONS


def _typed(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The frame's columns in the schema's order and types (stable files, stable bytes)."""
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def _dates(days: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(days, dtype=np.int32)).cast(pl.Date)


def _opportunities(sim: dict[str, np.ndarray], spec: LakeSpec) -> pl.DataFrame:
    """Per-opportunity keys, row-aligned with the simulation arrays; ids are tenant-day-index."""
    industry = pl.Series(sim["industry"])
    tenant = pl.Series(spec.tenant_ids()).gather(pl.Series(sim["tenant"]))
    parts = pl.DataFrame(
        {
            "tenant": tenant,
            "day": _dates(sim["created"]).dt.strftime("%Y%m%d"),
            "index": pl.Series(sim["index"]).cast(pl.String).str.zfill(4),
        }
    )
    return pl.DataFrame(
        {
            "tenant_id": tenant,
            "opportunity_id": parts.select(pl.concat_str(["tenant", "day", "index"], separator="-")).to_series(),
            "industry_id": pl.Series([i[0] for i in INDUSTRIES]).gather(industry),
            "industry_encoded": industry.cast(pl.Int32),
        }
    )


_ALL_KEYS = ("tenant_id", "opportunity_id", "industry_id", "industry_encoded")


def _keyed(
    opportunities: pl.DataFrame,
    opp: np.ndarray,
    columns: dict[str, object],
    event: str,
    keys: Sequence[str] = ("tenant_id", "opportunity_id"),
) -> pl.DataFrame:
    """Key columns of ``opp`` beside ``columns``, with the month partition of the event date."""
    frame = opportunities.select(keys)[opp].hstack(pl.DataFrame(columns))
    return frame.with_columns(pl.col(event).dt.month_start().alias("partition_date"))


def _evaluations(sim, daily, opportunities: pl.DataFrame, lo: int, hi: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Weekly evaluations while open, plus the CRM's last evaluation on the close day."""
    pick = np.flatnonzero((daily["offset"] % EVALUATION_EVERY == 0) & (daily["day"] >= lo) & (daily["day"] <= hi))
    opp, offset = daily["opp"][pick], daily["offset"][pick]
    slot = (np.cumsum(sim["slots"]) - sim["slots"])[opp] + offset // EVALUATION_EVERY
    stage = daily["stage"][pick]
    amount = sim["amount"][opp]
    probability = np.round(np.clip(STAGE_PROBABILITY[stage] + sim["optimism"][opp], 0.02, 0.98), 2)
    count_30d = daily["count_30d"][pick]
    since_last = daily["since_last"][pick]
    stakeholders = sim["stakeholders"][opp] + stage // 2
    anomalous = sim["anomaly_u"][slot] < ANOMALY_RATE
    kind, size = sim["anomaly_kind"][slot], sim["anomaly_size"][slot]
    amount = np.where(anomalous & (kind == 0), np.round(amount * (8 + 22 * size), 2), amount)
    count_30d = np.where(anomalous & (kind == 1), count_30d + np.round(40 + 80 * size), count_30d)
    probability = np.where(anomalous & (kind == 2), np.where(stage <= 1, 0.97, 0.03), probability)
    since_last = np.where(anomalous & (kind == 3), since_last + np.round(90 + 300 * size), since_last)
    stakeholders = np.where(anomalous & (kind == 4), stakeholders + np.round(15 + 25 * size), stakeholders)
    day = _dates(daily["day"][pick])
    open_rows = {
        "evaluation_date": day,
        "stage": pl.Series(OPEN_STAGES).gather(pl.Series(stage)),
        "stage_encoded": stage,
        "amount": amount,
        "probability": probability,
        "days_to_close": sim["expected"][opp] - offset,
        "days_since_last_activity": since_last,
        "activity_count_30d": count_30d,
        "stakeholder_count": stakeholders,
        "risk_score": daily["risk_score"][pick],
        catalog.ANOMALY_LABEL: anomalous,
    }
    truth = _keyed(opportunities, opp, {"evaluation_date": day, "true_risk": daily["true_risk"][pick]}, "evaluation_date")

    # The CRM's evaluation on the close day: terminal stage, probability 1 or 0. Preparation must
    # never use it (it is not before the outcome); it is here so point-in-time joins are tested.
    close_day = sim["created"] + sim["cycle"]
    closed = np.flatnonzero(sim["closes"] & (close_day >= lo) & (close_day <= hi))
    last = (np.cumsum(sim["life"]) - 1)[closed]
    won = sim["won"][closed]
    final_rows = {
        "evaluation_date": _dates(close_day[closed]),
        "stage": pl.Series(STAGES).gather(pl.Series(np.where(won, 5, 6))),
        "stage_encoded": np.where(won, 5, 6),
        "amount": sim["amount"][closed],
        "probability": np.where(won, 1.0, 0.0),
        "days_to_close": np.zeros(closed.size, dtype=np.int64),
        "days_since_last_activity": daily["since_last"][last] + 1,
        "activity_count_30d": daily["count_30d"][last],
        "stakeholder_count": sim["stakeholders"][closed] + 2,
        "risk_score": np.where(won, 0.0, 1.0),
        catalog.ANOMALY_LABEL: np.zeros(closed.size, dtype=bool),
    }
    frames = [
        _keyed(opportunities, opp, open_rows, "evaluation_date", _ALL_KEYS).with_columns(_opp=pl.Series(opp)),
        _keyed(opportunities, closed, final_rows, "evaluation_date", _ALL_KEYS).with_columns(_opp=pl.Series(closed)),
    ]
    frame = pl.concat([_typed(f, EVALUATION_SCHEMA | {"_opp": pl.Int64}) for f in frames])
    frame = frame.sort("_opp", "evaluation_date").drop("_opp")
    return frame, _typed(truth, TRUTH_EVALUATION_SCHEMA)


def _outcomes(sim, opportunities: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
    close_day = sim["created"] + sim["cycle"]
    closed = np.flatnonzero(sim["closes"] & (close_day >= lo) & (close_day <= hi))
    won = sim["won"][closed]
    columns = {
        "outcome": np.where(won, "won", "lost"),
        catalog.WIN_TARGET: won.astype(np.int32),
        "closed_date": _dates(close_day[closed]),
        "close_amount": np.where(won, sim["amount"][closed], 0.0),
    }
    return _typed(_keyed(opportunities, closed, columns, "closed_date").sort("closed_date", "opportunity_id"), OUTCOME_SCHEMA)


def _snapshots(daily, opportunities: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
    pick = np.flatnonzero((daily["day"] >= lo) & (daily["day"] <= hi))
    columns = {
        "snapshot_date": _dates(daily["day"][pick]),
        "risk_score": daily["risk_score"][pick],
        "activity_count_30d": daily["count_30d"][pick],
        "days_since_last_activity": daily["since_last"][pick],
    }
    return _typed(_keyed(opportunities, daily["opp"][pick], columns, "snapshot_date"), SNAPSHOT_SCHEMA)


def _truth_opportunities(sim, opportunities: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
    made = np.flatnonzero((sim["created"] >= lo) & (sim["created"] <= hi))
    closes = sim["closes"][made]
    columns = {
        "created_date": _dates(sim["created"][made]),
        "amount": sim["amount"][made],
        "quality": np.round(sim["quality"][made], 6),
        "true_win_probability": np.round(sim["p_true"][made], 6),
        "closes": closes,
        "close_date": _dates(sim["created"][made] + sim["cycle"][made]),
        "won": sim["won"][made],
    }
    frame = _keyed(opportunities, made, columns, "created_date", _ALL_KEYS).with_columns(
        pl.when(pl.col("closes")).then(pl.col(c)).alias(c) for c in ("close_date", "won")
    )
    return _typed(frame, TRUTH_OPPORTUNITY_SCHEMA)


def _revenue(spec: LakeSpec, lo: int, hi: int) -> pl.DataFrame:
    """Daily revenue and pipeline per tenant: trend x weekly x yearly x quarter-end x noise.

    An aggregate series with its own model (the simulated deals are a sample of the pipeline);
    noise is keyed by (seed, date), so appended days match a longer run.
    """
    days = np.arange(lo, hi + 1)
    if days.size == 0:
        return pl.DataFrame(schema=REVENUE_SCHEMA)
    noise = np.stack([np.random.default_rng([spec.seed, _STREAM_REVENUE, int(d)]).standard_normal(2 * spec.tenants) for d in days])
    calendar = pl.DataFrame({"date": _dates(days)}).with_columns(
        weekday=pl.col("date").dt.weekday() - 1,
        doy=pl.col("date").dt.ordinal_day(),
        to_quarter_end=(
            pl.date(pl.col("date").dt.year(), pl.col("date").dt.quarter() * 3, 1).dt.month_end() - pl.col("date")
        ).dt.total_days(),
    )
    weekday = calendar.get_column("weekday").to_numpy()
    doy = calendar.get_column("doy").to_numpy()
    to_quarter_end = calendar.get_column("to_quarter_end").to_numpy()
    years = (days - _ordinal(date(2020, 1, 1))) / 365.25
    weekly = np.array([1.10, 1.15, 1.10, 1.05, 1.25, 0.35, 0.20])[weekday]
    yearly = 1 + 0.18 * np.sin(2 * np.pi * (doy - 100) / 365.25)
    quarter_end = np.clip(1 - to_quarter_end / 7, 0, None)
    base = 25_000.0 * spec.tenants * _tenant_weights(spec.tenants)
    trend = 1 + 0.15 * years
    frames = []
    for j, tenant in enumerate(spec.tenant_ids()):
        revenue = base[j] * trend * weekly * yearly * (1 + 1.2 * quarter_end) * np.exp(0.08 * noise[:, 2 * j])
        pipeline = (
            30 * base[j] * trend * (1 + 0.08 * np.sin(2 * np.pi * (doy - 40) / 365.25))
            * (1 - 0.25 * np.clip(1 - to_quarter_end / 14, 0, None))
            * np.exp(0.03 * noise[:, 2 * j + 1])
        )
        frames.append(
            pl.DataFrame(
                {
                    "tenant_id": [tenant] * days.size,
                    "date": calendar.get_column("date"),
                    "revenue": np.round(revenue, 2),
                    "pipeline_value": np.round(pipeline, 2),
                }
            )
        )
    frame = pl.concat(frames).with_columns(partition_date=pl.col("date").dt.month_start())
    return _typed(frame, REVENUE_SCHEMA)


def build_tables(spec: LakeSpec, lo: date, hi: date, tables: Sequence[str] | None = None) -> dict[str, pl.DataFrame]:
    """Every requested table's rows with event dates in [lo, hi], in memory.

    Keys are table names; ground truth comes as ``_truth/opportunities`` and
    ``_truth/risk_evaluations``. Preparation's top-up uses this without touching storage.
    """
    wanted = set(tables or spec.tables)
    lo_day, hi_day = _ordinal(lo), _ordinal(hi)
    out: dict[str, pl.DataFrame] = {}
    if wanted & {catalog.RISK_EVALUATIONS, catalog.ML_OUTCOMES, catalog.RISK_SNAPSHOTS, catalog.TRUTH}:
        sim = _simulate(spec, max(spec.start, lo - timedelta(days=MAX_LIFE)), hi)
        if sim is None:
            empty = {catalog.RISK_EVALUATIONS: EVALUATION_SCHEMA, catalog.ML_OUTCOMES: OUTCOME_SCHEMA, catalog.RISK_SNAPSHOTS: SNAPSHOT_SCHEMA}
            out.update({t: pl.DataFrame(schema=s) for t, s in empty.items() if t in wanted})
        else:
            daily = _daily(sim)
            opportunities = _opportunities(sim, spec)
            if wanted & {catalog.RISK_EVALUATIONS, catalog.TRUTH}:
                evaluations, truth = _evaluations(sim, daily, opportunities, lo_day, hi_day)
                if catalog.RISK_EVALUATIONS in wanted:
                    out[catalog.RISK_EVALUATIONS] = evaluations
                if catalog.TRUTH in wanted:
                    out[f"{catalog.TRUTH}/{TRUTH_OPPORTUNITIES}"] = _truth_opportunities(sim, opportunities, lo_day, hi_day)
                    out[f"{catalog.TRUTH}/{TRUTH_EVALUATIONS}"] = truth
            if catalog.ML_OUTCOMES in wanted:
                out[catalog.ML_OUTCOMES] = _outcomes(sim, opportunities, lo_day, hi_day)
            if catalog.RISK_SNAPSHOTS in wanted:
                out[catalog.RISK_SNAPSHOTS] = _snapshots(daily, opportunities, lo_day, hi_day)
    if catalog.REVENUE_DAILY in wanted:
        out[catalog.REVENUE_DAILY] = _revenue(spec, lo_day, hi_day)
    return out


# --- writing ------------------------------------------------------------------------------------


def make_spec(
    *,
    n_opportunities: int = 8000,
    pct_closed: float = 0.7,
    tenants: int = 3,
    start: date | None = None,
    end: date = DEFAULT_END,
    seed: int = 0,
    tables: Sequence[str] | None = None,
) -> LakeSpec:
    """Check the arguments once and freeze them; start defaults to two years before end."""
    start = start or end - timedelta(days=730)
    tables = tuple(tables or TABLES)
    unknown = sorted(set(tables) - set(TABLES))
    problems = [
        (start > end, f"start {start} is after end {end}"),
        (n_opportunities < 0, f"n_opportunities must be >= 0, got {n_opportunities}"),
        (not 0.0 <= pct_closed <= 1.0, f"pct_closed must be in [0, 1], got {pct_closed}"),
        (tenants < 1, f"tenants must be >= 1, got {tenants}"),
        (seed < 0, f"seed must be >= 0, got {seed}"),
        (bool(unknown), f"unknown tables {unknown}; expected some of {list(TABLES)}"),
    ]
    for bad, message in problems:
        if bad:
            raise ValueError(message)
    return LakeSpec(seed, start, end, n_opportunities, (end - start).days + 1, pct_closed, tenants, tables)


def _table_uri(lake: str, table: str) -> str:
    return storage.join(lake, *table.split("/"))


def write_table(table: str, frame: pl.DataFrame, lake: str, file_name: str) -> list[str]:
    """Check a table against its contract, then write its partitions; a bad frame writes nothing."""
    uri = _table_uri(lake, table)
    if table in contracts.TABLE_CONTRACTS:
        contracts.validate_table(table, frame, uri)
    return storage.write_dataset(frame, uri, PARTITION_KEYS, file_name=file_name)


def _write(frames: dict[str, pl.DataFrame], lake: str, first_day: date) -> dict[str, int]:
    """Each table as hive partitions; one file per partition per run, named by its first day."""
    for table, frame in frames.items():  # check all before writing any
        if table in contracts.TABLE_CONTRACTS:
            contracts.validate_table(table, frame, _table_uri(lake, table))
    name = f"part-{first_day:%Y%m%d}.parquet"
    for table, frame in frames.items():
        storage.write_dataset(frame, _table_uri(lake, table), PARTITION_KEYS, file_name=name)
    return {table: frame.height for table, frame in frames.items()}


def _clear(lake: str) -> None:
    """Replace a lake this generator wrote; refuse to touch tables that someone else wrote."""
    if storage.exists(storage.join(lake, catalog.TRUTH, MANIFEST)):
        for table in TABLES:
            storage.remove(_table_uri(lake, table))
        return
    for table in TABLES:
        uri = _table_uri(lake, table)
        if storage.exists(uri) and storage.list_parquet(uri):
            raise storage.StorageError(
                f"{uri}: holds Parquet files the generator did not write; refusing to overwrite "
                "(choose an empty --output-path, or use --append-days on a generated lake)"
            )


def generate(
    output: str,
    *,
    n_opportunities: int = 8000,
    pct_closed: float = 0.7,
    tenants: int = 3,
    start: date | None = None,
    end: date = DEFAULT_END,
    seed: int = 0,
    tables: Sequence[str] | None = None,
) -> dict[str, int]:
    """Write a synthetic lake at ``output``; returns rows written per table.

    ``n_opportunities`` are created evenly over [start, end]; each closes with probability
    ``pct_closed`` after a 10-240 day cycle (the rest stall), so deals opened in the last weeks
    are still open at ``end`` and the closed share ends a little below ``pct_closed``.
    """
    spec = make_spec(
        n_opportunities=n_opportunities, pct_closed=pct_closed, tenants=tenants, start=start, end=end, seed=seed, tables=tables
    )
    _clear(output)
    summary = _write(build_tables(spec, spec.start, spec.end), output, spec.start)
    storage.write_bytes(spec.to_json(), storage.join(output, catalog.TRUTH, MANIFEST))
    log.info("generated %s from %s to %s: %s", output, spec.start, spec.end, summary)
    return summary


def read_spec(lake: str) -> LakeSpec:
    return LakeSpec.from_json(storage.read_bytes(storage.join(lake, catalog.TRUTH, MANIFEST)))


def append_days(lake: str, days: int, seed: int = 0) -> dict[str, int]:
    """Extend a generated lake by ``days`` days after its last date; returns rows added per table.

    Rows equal those one generate() over the longer range would write for those days (same
    seed, same daily rate of new opportunities).
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    spec = read_spec(lake)
    if seed != spec.seed:
        log.warning("%s was generated with seed %s; appending with seed %s", lake, spec.seed, seed)
        spec = replace(spec, seed=seed)
    first, last = spec.end + timedelta(days=1), spec.end + timedelta(days=days)
    summary = _write(build_tables(spec, first, last), lake, first)
    storage.write_bytes(replace(spec, end=last).to_json(), storage.join(lake, catalog.TRUTH, MANIFEST))
    log.info("appended %s to %s to %s: %s", first, last, lake, summary)
    return summary


# --- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-path", required=True, help="lake root: a folder or abfs:// URI")
    parser.add_argument("--n-opportunities", type=int, default=8000)
    parser.add_argument("--pct-closed", type=float, default=0.7)
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--start", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: end - 730 days)")
    parser.add_argument("--end", type=date.fromisoformat, default=DEFAULT_END, help=f"YYYY-MM-DD (default {DEFAULT_END})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tables", default=None, help=f"comma-separated subset of {','.join(TABLES)}")
    parser.add_argument("--append-days", type=int, default=None, help="extend an existing generated lake by N days")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.append_days is not None:
            summary = append_days(args.output_path, args.append_days, seed=args.seed)
        else:
            summary = generate(
                args.output_path,
                n_opportunities=args.n_opportunities,
                pct_closed=args.pct_closed,
                tenants=args.tenants,
                start=args.start,
                end=args.end,
                seed=args.seed,
                tables=args.tables.split(",") if args.tables else None,
            )
    except (ValueError, storage.StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"output_path": args.output_path, "rows": summary}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
