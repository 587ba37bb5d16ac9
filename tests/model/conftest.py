"""Small generated frames for the trainer tests: real signal, a few hundred rows, seconds to fit.

Each fixture writes one Parquet file under the session's temporary root and returns its path;
test_risk_trajectory.py / test_revenue_forecast.py keep their own fixtures in their own files.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

PROJECT = Path(__file__).resolve().parents[2]


def opportunity_frame(n: int = 400, seed: int = 0) -> pl.DataFrame:
    """The prepared.parquet shape: opportunity features, risk and win targets, closed flag."""
    rng = np.random.default_rng(seed)
    industry = rng.integers(0, 4, n)
    stage = rng.integers(0, 6, n)
    days_idle = rng.integers(0, 60, n)
    activity = rng.poisson(6, n)
    stakeholders = rng.integers(1, 8, n)
    probability = rng.uniform(0, 1, n)
    logit = 2.5 * probability - 0.05 * days_idle + 0.15 * activity + 0.2 * stage - 1.5
    risk = 1 / (1 + np.exp(logit)) + rng.normal(0, 0.03, n)
    start = dt.date(2024, 1, 1)
    return pl.DataFrame(
        {
            "tenant_id": ["t1"] * n,
            "opportunity_id": [f"opp-{i:05d}" for i in range(n)],
            "evaluation_date": [start + dt.timedelta(days=int(d)) for d in np.sort(rng.integers(0, 365, n))],
            "industry_id": [f"ind-{i}" for i in industry],
            "amount": rng.lognormal(10, 1, n),
            "probability": probability,
            "days_to_close": rng.integers(1, 180, n),
            "stage_encoded": stage,
            "industry_encoded": industry,
            "days_since_last_activity": days_idle,
            "activity_count_30d": activity,
            "stakeholder_count": stakeholders,
            "target_risk": np.clip(risk, 0, 1),
            "target_win": (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(np.int64),
            "is_closed": rng.uniform(0, 1, n) < 0.8,
            "is_synthetic": [True] * n,
        }
    )


def anomaly_frame(n: int = 400, rate: float = 0.1, seed: int = 0, label: bool = True) -> pl.DataFrame:
    """Gaussian inliers and far-off outliers in four numeric columns, labelled ``is_anomaly``."""
    rng = np.random.default_rng(seed)
    outlier = rng.uniform(0, 1, n) < rate
    values = rng.normal(0, 1, (n, 4))
    values[outlier] = rng.normal(0, 1, (outlier.sum(), 4)) * 0.5 + rng.choice([-6, 6], (outlier.sum(), 4))
    frame = pl.DataFrame({f"x{i}": values[:, i] * (i + 1) * 10 for i in range(4)})
    return frame.with_columns(pl.Series("is_anomaly", outlier)) if label else frame


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-data")


@pytest.fixture(scope="session")
def opportunities_path(data_dir: Path) -> Path:
    path = data_dir / "prepared.parquet"
    opportunity_frame().write_parquet(path)
    return path


@pytest.fixture(scope="session")
def anomaly_path(data_dir: Path) -> Path:
    path = data_dir / "anomaly.parquet"
    anomaly_frame().write_parquet(path)
    return path


def run_module(module: str, args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m models.<module> ARGS`` in a fresh process, from ``cwd`` (so a stray write to the
    working directory would land there, not in the project)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.run(
        [sys.executable, "-m", f"models.{module}", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass
class TrainerRun:
    """One ``python -m models.<name>`` process: its result, output folder and working folder."""

    done: subprocess.CompletedProcess[str]
    output: Path
    cwd: Path

    @property
    def metrics(self) -> dict[str, float]:
        return json.loads((self.output / "metrics.json").read_text())

    @property
    def run_id(self) -> str:
        return json.loads((self.output / "run.json").read_text())["run_id"]

    @property
    def model_name(self) -> str:
        return json.loads((self.output / "run.json").read_text())["model_name"]


def train_cli(module: str, data: Path, where: Path, *extra: str) -> TrainerRun:
    """Train through the command-line contract into ``where/out`` from the working folder ``where/cwd``."""
    cwd, output = where / "cwd", where / "out"
    cwd.mkdir(parents=True, exist_ok=True)
    done = run_module(module, ["--training-data", str(data), "--output", str(output), *extra], cwd)
    return TrainerRun(done, output, cwd)


def assert_trained(run: TrainerRun, metric_names: set[str]) -> dict[str, float]:
    """The process succeeded, metrics.json holds exactly ``metric_names`` with finite values, the
    MLflow run logged the same values, and the working folder holds only the MLflow store."""
    from mlflow.tracking import MlflowClient

    assert run.done.returncode == 0, run.done.stderr[-3000:]
    metrics = run.metrics
    assert set(metrics) == metric_names
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    logged = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(run.run_id).data.metrics
    assert {k: logged[k] for k in metric_names} == pytest.approx(metrics)
    assert {p.name for p in run.cwd.iterdir()} <= {"mlartifacts"}  # the local MLflow store, nothing else
    return metrics


def assert_bad_input(run: TrainerRun, data: Path, column: str) -> None:
    """Exit code 2, one message naming the file and the column, nothing written."""
    assert run.done.returncode == 2, run.done.stderr[-3000:]
    assert str(data) in run.done.stderr
    assert column in run.done.stderr
    assert not (run.output / "model").exists()
    assert not (run.output / "metrics.json").exists()


def train_in_process(module: str, data: Path, where: Path, *extra: str) -> TrainerRun:
    """The same command line through ``models.<module>.main(argv)`` in this process (no interpreter
    start-up: for the cases that need no fresh process). Runs from ``where/cwd`` like train_cli."""
    import contextlib
    import importlib
    import io

    cwd, output = where / "cwd", where / "out"
    cwd.mkdir(parents=True, exist_ok=True)
    argv = ["--training-data", str(data), "--output", str(output), *extra]
    err = io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err):
            try:
                code = importlib.import_module(f"models.{module}").main(argv)
            except SystemExit as exit_:  # argparse usage errors
                code = int(exit_.code or 0)
    finally:
        os.chdir(previous)
    return TrainerRun(subprocess.CompletedProcess(argv, code, "", err.getvalue()), output, cwd)


LOAD_AND_PREDICT = """
import sys, json
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
out = model.predict(frame)
print(json.dumps({"columns": list(out.columns), "rows": len(out), "head": out.head(3).to_dict("records"),
                  "code": sys.modules["models"].__file__},
                 default=str))
"""


def predict_in_fresh_process(model_dir: Path, data: Path, cwd: Path) -> dict:
    """Load ``model_dir`` with ``mlflow.pyfunc.load_model`` in a new interpreter (isolated mode, no
    PYTHONPATH) and predict ``data``; ``code`` in the answer says where ``models`` came from."""
    import json

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_AND_PREDICT, str(model_dir), str(data)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Helpers as fixtures, so test files need no import of this conftest (two folders each have one).
@pytest.fixture(scope="session")
def make_opportunities():
    return opportunity_frame


@pytest.fixture(scope="session")
def make_anomalies():
    return anomaly_frame


@pytest.fixture(scope="session")
def trainer_cli():
    return train_cli


@pytest.fixture(scope="session")
def trainer_main():
    return train_in_process


@pytest.fixture(scope="session")
def check_trained():
    return assert_trained


@pytest.fixture(scope="session")
def check_bad_input():
    return assert_bad_input


@pytest.fixture(scope="session")
def fresh_predict():
    return predict_in_fresh_process
