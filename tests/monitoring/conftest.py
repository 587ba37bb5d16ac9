"""Reports and monitoring on real components: the trainers' command line, MLflow on SQLite, the
local endpoints (no server: deploys smoke-test in process), the inference-log writer and Prefect's
test harness. Every test gets its own lake, MLflow store, endpoint state and serve port."""

from __future__ import annotations

import importlib
import json
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

WIN_FAST = ("--iterations", "40", "--cv-folds", "2", "--early-stopping-rounds", "10")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema migrated, once: a fresh store spends seconds in
    migrations, so each test starts from a copy of this one."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path) -> Path:
    """A fresh lake, MLflow store, endpoint state and map; deploys find no server and smoke-test
    in process."""
    import shutil

    shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow.db")
    monkeypatch.setenv("SALESRISK_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("SALESRISK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SALESRISK_ENDPOINT_MAP", str(tmp_path / "config" / "endpoints.yaml"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SALESRISK_SERVE_PORT", str(free_port()))
    monkeypatch.delenv("SALESRISK_MONITOR_ACTIONS", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def opportunity_frame(n: int = 500, seed: int = 0, *, shifted: bool = False) -> pl.DataFrame:
    """Closed deals with the runbook's eight features, a win drawn from a logistic of them, and
    ``target_risk = 1 - target_win``. ``shifted``: larger deals, far longer idle times."""
    rng = np.random.default_rng(seed)
    stage = rng.integers(0, 5, n)
    idle = rng.integers(0, 40, n) + (45 if shifted else 0)
    activity = rng.poisson(6, n)
    probability = rng.uniform(0, 1, n)
    logit = 2.5 * probability - 0.06 * idle + 0.15 * activity + 0.2 * stage - 1.2
    win = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pl.DataFrame(
        {
            "tenant_id": ["t1"] * n,
            "opportunity_id": [f"opp-{seed}-{i:05d}" for i in range(n)],
            "amount": rng.lognormal(10.8 if shifted else 10, 1, n),
            "probability": probability,
            "days_to_close": rng.integers(1, 180, n),
            "stage_encoded": stage,
            "industry_encoded": rng.integers(0, 6, n),
            "days_since_last_activity": idle,
            "activity_count_30d": activity,
            "stakeholder_count": rng.integers(1, 8, n),
            "target_risk": (1 - win).astype(np.float64),
            "target_win": win,
            "is_closed": [1] * n,
        }
    )


def anomaly_frame(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    outlier = rng.uniform(0, 1, n) < 0.1
    values = rng.normal(0, 1, (n, 3))
    values[outlier] += rng.choice([-6, 6], (outlier.sum(), 3))
    return pl.DataFrame({f"x{i}": values[:, i] for i in range(3)}).with_columns(pl.Series("is_anomaly", outlier.astype(np.int32)))


def snapshot_frame(n_opportunities: int = 60, seed: int = 0) -> pl.DataFrame:
    """Weekly snapshots with targets at +30/60/90 days (null past the last snapshot)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("opportunityId", "snapshotDate", "risk_score", "activity_count_30d",
                                              "days_since_last_activity", "target_risk_30", "target_risk_60", "target_risk_90")}
    for i in range(n_opportunities):
        n = int(rng.integers(6, 20))
        z0, slope = rng.normal(-0.5, 0.8), rng.normal(0, 0.25)
        latent = 1 / (1 + np.exp(-(z0 + slope * np.arange(n))))
        for t in range(n):
            rows["opportunityId"].append(f"opp-{i}")
            rows["snapshotDate"].append(date(2024, 1, 1) + pd.Timedelta(days=7 * t).to_pytimedelta())
            rows["risk_score"].append(float(np.clip(latent[t] + rng.normal(0, 0.03), 0, 1)))
            rows["activity_count_30d"].append(int(rng.poisson(12 * (1 - latent[t]) + 0.5)))
            rows["days_since_last_activity"].append(int(40 * latent[t]))
            for h in (30, 60, 90):
                k = t + round(h / 7)
                rows[f"target_risk_{h}"].append(float(latent[k]) if k < n else None)
    return pl.DataFrame(rows).with_columns(pl.col("snapshotDate").cast(pl.Date))


@dataclass
class Trained:
    model_id: str
    output: Path
    run_id: str
    model_name: str
    version: str | None


def train(model_id: str, data: pl.DataFrame, where: Path, *extra: str, register: bool = True) -> Trained:
    """``python -m models.<model_id>`` through its ``main(argv)`` in this process."""
    from mlflow.tracking import MlflowClient

    where.mkdir(parents=True, exist_ok=True)
    path = where / "training.parquet"
    data.write_parquet(path)
    output = where / "out"
    argv = ["--training-data", str(path), "--output", str(output), *extra, *(["--register"] if register else [])]
    code = importlib.import_module(f"models.{model_id}").main(argv)
    assert code == 0, f"models.{model_id} exited {code}"
    run = json.loads((output / "run.json").read_text())
    version = None
    if register:
        versions = MlflowClient().search_model_versions(f"run_id='{run['run_id']}'")
        version = str(versions[0].version)
    return Trained(model_id, output, run["run_id"], run["model_name"], version)


def served_model(model_name: str, version: str):
    """The registered version loaded once per store (loading a CatBoost pyfunc takes a while)."""
    import os

    import mlflow

    from salesrisk import registry

    key = (os.environ["MLFLOW_TRACKING_URI"], model_name, version)
    if key not in _LOADED:
        registry.configure()
        _LOADED[key] = mlflow.pyfunc.load_model(registry.model_uri(model_name, version))
    return _LOADED[key]


_LOADED: dict[tuple[str, str, str], object] = {}


def log_single_row_requests(
    lake: str, endpoint: str, model_name: str, version: str, frame: pl.DataFrame, ids: Sequence[str], at: datetime | None = None
) -> list[str]:
    """Score ``frame`` with the registered version as the endpoint server does (one request per
    row, ``x-request-id`` = the opportunity id) and write the batches with the server's writer."""
    from deployments.inference_log import ScoredBatch, write
    from deployments.serve.scoring import Scorer
    from models import tabular

    model = served_model(model_name, version)
    scorer = Scorer(model)
    inputs = tabular.pandas_input(frame, model)
    stamp = (at or datetime.now(timezone.utc)).timestamp()
    batches = []
    for i, request_id in enumerate(ids):
        row = inputs.iloc[[i]].reset_index(drop=True)
        content = scorer.encode(scorer.predict(scorer.frame(list(row.columns), row.values.tolist())))
        batches.append(ScoredBatch(endpoint, "blue", model_name, version, request_id, stamp, row, content))
    return write(lake, batches)


def log_batch(lake: str, endpoint: str, model_name: str, version: str, frame: pl.DataFrame, request_id: str) -> list[str]:
    """One request scoring every row of ``frame`` (outputs written as the server encodes them)."""
    from deployments.inference_log import ScoredBatch, write
    from deployments.serve.scoring import Scorer
    from models import tabular

    model = served_model(model_name, version)
    scorer = Scorer(model)
    inputs = tabular.pandas_input(frame, model)
    content = scorer.encode(scorer.predict(scorer.frame(list(inputs.columns), inputs.values.tolist())))
    return write(lake, [ScoredBatch(endpoint, "blue", model_name, version, request_id, time.time(), inputs, content)])


def write_outcomes(lake: str, ids: Sequence[str], won: Sequence[int], closed: date) -> None:
    from models import synthetic

    frame = pl.DataFrame(
        {
            "tenant_id": ["t1"] * len(ids),
            "opportunity_id": list(ids),
            "outcome": ["won" if w else "lost" for w in won],
            "target_win": [int(w) for w in won],
            "closed_date": [closed] * len(ids),
            "close_amount": [1000.0 if w else 0.0 for w in won],
            "partition_date": [closed.replace(day=1)] * len(ids),
        }
    ).with_columns(pl.col("target_win").cast(pl.Int32))
    synthetic.write_table("ml_outcomes", frame, lake, "part-test.parquet")


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(data: bytes, min_size: tuple[int, int] = (300, 200)) -> tuple[int, int]:
    """The bytes are a PNG that PIL opens, at least ``min_size`` pixels."""
    import io

    from PIL import Image

    assert data[:8] == PNG_MAGIC
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], image.size
        return image.size
