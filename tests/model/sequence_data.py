"""Small generated inputs for the sequence-model tests, with signal a model can learn in seconds.

Snapshots: each opportunity's risk drifts along its own slope (a logistic of a linear trend), seen
through a noisy ``risk_score`` and activity counts that fall as risk rises; the +30/60/90-day
targets are the noise-free risk at that date, null where the future lies past the last snapshot.
Revenue: a weekly or daily series with trend, yearly (and weekly) seasonality, a holiday uplift
and an optional promotion regressor.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

PROJECT = Path(__file__).resolve().parents[2]
HORIZONS = (30, 60, 90)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def snapshot_frame(
    n_opportunities: int = 120,
    seed: int = 0,
    *,
    min_snapshots: int = 3,
    max_snapshots: int = 30,
    step_days: int = 7,
    single_target: bool = False,
) -> pl.DataFrame:
    """Weekly snapshots of ``n_opportunities`` opportunities (3..30 each, so many are shorter than
    a 30-step window). With ``single_target`` only ``target_risk`` (the risk at each snapshot)."""
    rng = np.random.default_rng(seed)
    start = dt.date(2024, 1, 1)
    columns: dict[str, list] = {name: [] for name in ("opportunityId", "snapshotDate", "risk_score", "activity_count_30d", "days_since_last_activity")}
    targets: dict[str, list] = {f"target_risk_{h}": [] for h in HORIZONS} | {"target_risk": []}
    for i in range(n_opportunities):
        n = int(rng.integers(min_snapshots, max_snapshots + 1))
        z0, slope = rng.normal(-0.5, 0.8), rng.normal(0.0, 0.25)  # slope per week
        first = start + dt.timedelta(days=int(rng.integers(0, 60)))
        days = np.arange(n) * step_days
        latent = _sigmoid(z0 + slope * days / 7)
        risk_score = np.clip(latent + rng.normal(0, 0.03, n), 0, 1)
        activity = rng.poisson(np.maximum(0.5, 12 * (1 - latent)))
        idle = np.maximum(0, np.round(40 * latent + rng.normal(0, 3, n)))
        life = days[-1]
        for t in range(n):
            columns["opportunityId"].append(f"opp-{i:04d}")
            columns["snapshotDate"].append(first + dt.timedelta(days=int(days[t])))
            columns["risk_score"].append(float(risk_score[t]))
            columns["activity_count_30d"].append(int(activity[t]))
            columns["days_since_last_activity"].append(int(idle[t]))
            targets["target_risk"].append(float(latent[t]))
            for h in HORIZONS:
                future = days[t] + h
                value = float(_sigmoid(z0 + slope * future / 7)) if future <= life else None
                targets[f"target_risk_{h}"].append(value)
    frame = pl.DataFrame(columns).with_columns(pl.col("snapshotDate").cast(pl.Date))
    if single_target:
        return frame.with_columns(pl.Series("target_risk", targets["target_risk"], dtype=pl.Float64))
    return frame.with_columns(
        [pl.Series(f"target_risk_{h}", targets[f"target_risk_{h}"], dtype=pl.Float64) for h in HORIZONS]
    )


def revenue_frame(
    periods: int = 160,
    freq: str = "weekly",
    seed: int = 0,
    *,
    columns: tuple[str, str] = ("date", "revenue"),
    promotion: bool = False,
) -> pl.DataFrame:
    """A revenue series with a ``Holiday_Flag`` (and a ``promotion`` regressor when asked)."""
    rng = np.random.default_rng(seed)
    step = {"daily": 1, "weekly": 7}[freq]
    start = dt.date(2021, 1, 1)
    dates = [start + dt.timedelta(days=step * i) for i in range(periods)]
    t = np.arange(periods) * step
    yearly = 0.08 * np.sin(2 * np.pi * t / 365.25) + 0.04 * np.cos(4 * np.pi * t / 365.25)
    weekly = 0.05 * np.sin(2 * np.pi * t / 7) if freq == "daily" else 0.0
    holiday = np.array([(d.month == 12 and d.day >= 18) or (d.month == 11 and 22 <= d.day <= 28) for d in dates])
    promo = rng.uniform(0, 1, periods) < 0.15
    level = 1_000_000 * (1 + 0.0004 * t)
    y = level * (1 + yearly + weekly + 0.15 * holiday + (0.1 * promo if promotion else 0)) * (1 + rng.normal(0, 0.01, periods))
    date_col, value_col = columns
    out = pl.DataFrame({date_col: dates, value_col: y, "Holiday_Flag": holiday.astype(np.int64)})
    if promotion:
        out = out.with_columns(pl.Series("promotion", promo.astype(np.float64)))
    return out


def run_trainer(module: str, args: Sequence[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``python -m models.<module> ARGS`` in a fresh process run from ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.run(
        [sys.executable, "-m", f"models.{module}", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_PREDICT = """
import json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
out = model.predict(pd.read_parquet(sys.argv[2]))
print(json.dumps({"columns": list(out.columns), "records": out.to_dict("records")}, default=str))
"""


def predict_in_fresh_process(model_dir: Path, data: Path, cwd: Path, timeout: int = 300) -> dict:
    """Load ``model_dir`` with ``mlflow.pyfunc.load_model`` in a new isolated interpreter (no
    PYTHONPATH: the model's packed code must be enough) and predict the Parquet file ``data``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", _PREDICT, str(model_dir), str(data)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
