"""Tiny real models registered in the session's MLflow store, and a real endpoint server.

The models stand in for the trainers' output only in shape (a pyfunc with a signature and an input
example per endpoint key); they are fitted here on generated data so these tests do not depend on
the trainer modules.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from salesrisk import catalog

ROOT = Path(__file__).resolve().parents[2]
TEST_ROOT = Path(os.environ["SALESRISK_TEST_ROOT"])


@dataclass
class Registered:
    """One endpoint key's model: its registered name, versions in registration order, a sample."""

    key: str
    name: str
    sample: pd.DataFrame
    versions: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _features(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 20_000.0, n),
            "probability": rng.uniform(0, 1, n),
            "days_to_close": rng.integers(1, 180, n).astype(float),
            "stage_encoded": rng.integers(0, 6, n).astype(float),
            "industry_encoded": rng.integers(0, 10, n).astype(float),
            "days_since_last_activity": rng.integers(0, 60, n).astype(float),
            "activity_count_30d": rng.poisson(5, n).astype(float),
            "stakeholder_count": rng.integers(1, 8, n).astype(float),
        }
    )


def _experiment() -> str:
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    existing = mlflow.get_experiment_by_name("serving-tests")
    if existing is not None:
        return existing.experiment_id
    return mlflow.create_experiment("serving-tests", artifact_location=(TEST_ROOT / "artifacts").as_uri())


def register(name: str, model, x: pd.DataFrame, *, with_output: bool = True) -> str:
    """Log ``model`` (scikit-learn API) with a signature and input example; register it; return the version."""
    import mlflow
    from mlflow.models import infer_signature

    with mlflow.start_run(experiment_id=_experiment()):
        kwargs = dict(
            name="model",
            signature=infer_signature(x, model.predict(x) if with_output else None),
            input_example=x.head(3),
            pip_requirements=["scikit-learn", "catboost"],
            registered_model_name=name,
        )
        if type(model).__module__.startswith("catboost"):
            info = mlflow.catboost.log_model(model, **kwargs)
        else:
            info = mlflow.sklearn.log_model(model, skops_trusted_types=["sklearn.tree._tree.Tree"], **kwargs)
    return str(info.registered_model_version)


def tree_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Five features and a target with interactions, a step and a low-cardinality column: trees
    that split one feature on several levels (tests of the SHAP and split tables)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    x[:, 2] = rng.integers(0, 4, n)
    y = 2 * x[:, 0] + np.sin(3 * x[:, 1]) + x[:, 0] * x[:, 2] + (x[:, 3] > 0.5)
    return x, y + rng.normal(0, 0.1, n)


def _win_probability(iterations: int, seed: int):
    from catboost import CatBoostClassifier

    x = _features(400, seed)
    y = (x["probability"] + 0.1 * x["stakeholder_count"] > 0.8).astype(int)
    return CatBoostClassifier(
        iterations=iterations, depth=3, verbose=0, allow_writing_files=False, thread_count=1, random_seed=seed
    ).fit(x, y), x


def _regressor(seed: int):
    from sklearn.linear_model import Ridge

    x = _features(200, seed)
    y = 0.3 * x["probability"] + 0.01 * x["days_since_last_activity"] + np.random.default_rng(seed).normal(0, 0.01, 200)
    return Ridge(alpha=1.0 + seed).fit(x, y), x


def _catboost_regressor():
    from catboost import CatBoostRegressor

    x = _features(200, 6)
    y = 0.3 * x["probability"] + 0.01 * x["days_since_last_activity"]
    return CatBoostRegressor(iterations=20, depth=3, verbose=0, allow_writing_files=False, thread_count=1, random_seed=0).fit(x, y), x


def _trajectory():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(3)
    x = pd.DataFrame(
        {
            catalog.TRAJECTORY_ID: [f"opp-{i % 20}" for i in range(120)],
            "risk_score": rng.uniform(0, 1, 120),
            "activity_count_30d": rng.poisson(4, 120).astype(float),
            "days_since_last_activity": rng.integers(0, 40, 120).astype(float),
        }
    )
    y = x["risk_score"] * 0.9 + 0.01 * x["days_since_last_activity"]
    pipe = make_pipeline(
        ColumnTransformer([("num", "passthrough", list(catalog.TRAJECTORY_FEATURES))], remainder="drop"),
        LinearRegression(),
    )
    return pipe.fit(x, y), x


def _revenue():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    x = pd.DataFrame({"ds": pd.date_range("2025-01-01", periods=90, freq="D")})
    y = np.linspace(1000.0, 2000.0, 90)
    pipe = make_pipeline(
        ColumnTransformer(
            [("t", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["ds"])], remainder="drop"
        ),
        LinearRegression(),
    )
    return pipe.fit(x, y), x


def _anomaly():
    from sklearn.ensemble import IsolationForest

    x = _features(300, 4)
    return IsolationForest(n_estimators=20, random_state=0).fit(x), x


@pytest.fixture(scope="session")
def registered() -> dict[str, Registered]:
    """Version 1 for every endpoint key; win_probability gets a v2 and a broken v3 (fails at predict)."""
    out: dict[str, Registered] = {}
    builders = {
        "risk_scoring_global": ("risk-scoring-global", lambda: _regressor(1)),
        "risk_scoring_industry": ("risk-scoring-tech", lambda: _regressor(2)),
        "risk_trajectory_lstm": ("risk-trajectory-lstm", _trajectory),
        "win_probability": ("win-probability-model", lambda: _win_probability(20, 1)),
        "revenue_forecasting": ("revenue-forecasting-model", _revenue),
        "anomaly": ("anomaly-detection-isolation-forest", _anomaly),
    }
    assert set(builders) == set(catalog.ENDPOINT_KEYS)
    for key, (name, build) in builders.items():
        model, x = build()
        out[key] = Registered(key, name, x.head(5).reset_index(drop=True))
        out[key].versions.append(register(name, model, x))
    win = out["win_probability"]
    model2, x2 = _win_probability(40, 2)
    win.versions.append(register(win.name, model2, x2))
    # Fitted on three columns but signed for eight: loads fine, fails on every predict.
    broken, _ = _regressor(5)
    broken.fit(x2.iloc[:, :3], x2["probability"])
    win.versions.append(register(win.name, broken, x2, with_output=False))
    return out


@dataclass
class Server:
    url: str
    key: str
    process: subprocess.Popen
    log_path: Path

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **extra}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(port: int, *extra_args: str, env: dict[str, str] | None = None, log_name: str = "server.log") -> Server:
    """``python -m deployments.serve`` in a subprocess, waited for until /health answers."""
    from deployments.local import keys

    log_path = TEST_ROOT / log_name
    environment = {**os.environ, **(env or {}), "SALESRISK_SERVE_PORT": str(port)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve", "--port", str(port), "--poll-seconds", "0.05", *extra_args],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
    return Server(url, (env or {}).get("SALESRISK_ENDPOINT_KEY") or keys.endpoint_key(), process, log_path)


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGINT)
    try:
        return server.process.wait(60)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait(10)


@pytest.fixture(scope="session")
def server(registered) -> Server:
    """A server on a free loopback port; SALESRISK_SERVE_PORT points deploy() at it for the session."""
    port = free_port()
    os.environ["SALESRISK_SERVE_PORT"] = str(port)
    srv = start_server(port, "--log-flush-seconds", "0.3")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def deployed(registered, server) -> dict[str, Registered]:
    """Version 1 of every key deployed to the running server."""
    from deployments import endpoints

    for reg in registered.values():
        endpoints.deploy(reg.key, reg.name, reg.versions[0], sample=reg.sample)
    return registered


@pytest.fixture
def extra_server():
    """Start another server on the session's state (same home, lake and key) on a free port."""
    started: list[Server] = []

    def start(*extra_args: str, log_name: str = "server-extra.log") -> Server:
        started.append(start_server(free_port(), *extra_args, log_name=log_name))
        return started[-1]

    yield start
    for srv in started:
        if srv.process.poll() is None:
            stop_server(srv)


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """A fresh home and endpoint map, and a serve port nobody listens on: deploy() runs without a server."""
    monkeypatch.setenv("SALESRISK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SALESRISK_ENDPOINT_MAP", str(tmp_path / "config" / "endpoints.yaml"))
    monkeypatch.setenv("SALESRISK_SERVE_PORT", str(free_port()))
    return tmp_path


@dataclass
class Stack:
    """A server on its own home, lake, MLflow store and key, with a few models deployed."""

    server: Server
    home: Path
    lake: Path
    env: dict[str, str]
    registered: dict[str, Registered]


@contextlib.contextmanager
def isolated_stack(root: Path, *, log_name: str = "server-stack.log") -> Iterator[Stack]:
    """A server isolated from the session's one: win_probability (a CatBoost classifier, the fast
    numeric path) and risk_scoring_industry (a CatBoost regressor registered as
    ``risk-scoring-stacktech``, for the industry check), deployed to a server on ``root``'s own
    home, lake and key, with limits of 1,000 rows and 1 MB per request. The models go to the
    session's MLflow store under names of their own (a fresh store costs 12 s of migrations).
    The environment is changed only while the stack is built; use ``Stack.server`` and ``Stack.env``."""
    from deployments import endpoints

    env = {
        "SALESRISK_HOME": str(root / "home"),
        "SALESRISK_LAKE": str(root / "lake"),
        "SALESRISK_ENDPOINT_MAP": str(root / "endpoints.yaml"),
        "SALESRISK_ENDPOINT_KEY": secrets.token_urlsafe(32),
        "SALESRISK_SERVE_PORT": str(free_port()),
    }
    builders = {
        "win_probability": ("win-probability-stack", lambda: _win_probability(20, 1)),
        "risk_scoring_industry": ("risk-scoring-stacktech", _catboost_regressor),
    }
    registered: dict[str, Registered] = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        for key, (name, build) in builders.items():
            model, x = build()
            registered[key] = Registered(key, name, x.head(5).reset_index(drop=True))
            registered[key].versions.append(register(name, model, x))
        server = start_server(int(env["SALESRISK_SERVE_PORT"]), *STACK_SERVER_ARGS, env=env, log_name=log_name)
        try:
            for reg in registered.values():
                endpoints.deploy(reg.key, reg.name, reg.versions[0], sample=reg.sample)
        except BaseException:
            stop_server(server)
            raise
    stack = Stack(server, root / "home", root / "lake", env, registered)
    try:
        yield stack
    finally:
        if stack.server.process.poll() is None:
            stop_server(stack.server)


STACK_SERVER_ARGS = ("--log-flush-seconds", "0.3", "--max-rows", "1000", "--max-body-mb", "1")
_SHARED: dict[str, Stack] = {}


def shared_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """One :func:`isolated_stack` for every test module that asks (built once, stopped at the end
    of the session), so the endpoint reliability tests pay for one server and one set of models."""
    if "stack" not in _SHARED:
        context = isolated_stack(tmp_path_factory.mktemp("endpoint-stack"))
        _SHARED["stack"] = context.__enter__()
        request.config.add_cleanup(lambda: context.__exit__(None, None, None))
    return _SHARED["stack"]
