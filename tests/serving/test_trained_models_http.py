"""The trainers' own saved models over HTTP: top_factors as objects, the switch, in-process parity.

win_probability and risk_scoring are trained here by their command-line entry points (small
iteration counts, on a generated frame with real signal), registered in the session's MLflow
store and deployed to a server of their own (own home, lake, key and port), so the session's
stand-in models and server are left alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
import pytest

from models import risk_scoring, tabular, win_probability
from salesrisk import catalog
from tests.serving.conftest import free_port, start_server, stop_server

FEATURES = list(catalog.WIN_PROBABILITY_FEATURES)
KEYS = ("win_probability", "risk_scoring_global")
OUTPUT = {"win_probability": "win_probability", "risk_scoring_global": "risk_score"}


def opportunities(n: int, seed: int) -> pl.DataFrame:
    """Prepared-data shape with signal in both targets, dated so the trainers split by time."""
    rng = np.random.default_rng(seed)
    stage = rng.integers(0, 6, n).astype(float)
    idle = rng.integers(0, 60, n).astype(float)
    activity = rng.poisson(6, n).astype(float)
    probability = rng.uniform(0, 1, n)
    logit = 2.5 * probability - 0.05 * idle + 0.15 * activity + 0.2 * stage - 1.5
    start = dt.date(2024, 1, 1)
    return pl.DataFrame(
        {
            "evaluation_date": [start + dt.timedelta(days=int(d)) for d in np.sort(rng.integers(0, 365, n))],
            "amount": rng.lognormal(10, 1, n),
            "probability": probability,
            "days_to_close": rng.integers(1, 180, n).astype(float),
            "stage_encoded": stage,
            "industry_encoded": rng.integers(0, 4, n).astype(float),
            "days_since_last_activity": idle,
            "activity_count_30d": activity,
            "stakeholder_count": rng.integers(1, 8, n).astype(float),
            "target_risk": np.clip(1 / (1 + np.exp(logit)) + rng.normal(0, 0.03, n), 0, 1),
            "target_win": (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(np.int64),
            "is_closed": rng.uniform(0, 1, n) < 0.85,
        }
    )


@dataclass
class Trained:
    url: str
    key: str
    paths: dict[str, str]  # endpoint key -> deployed model folder
    held_out: pd.DataFrame


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    from deployments import endpoints
    from deployments.local import state
    from salesrisk import registry

    root = tmp_path_factory.mktemp("trained-http")
    data = root / "prepared.parquet"
    opportunities(900, 5).write_parquet(data)
    env = {
        "SALESRISK_HOME": str(root / "home"),
        "SALESRISK_LAKE": str(root / "lake"),
        "SALESRISK_ENDPOINT_MAP": str(root / "endpoints.yaml"),
        "SALESRISK_ENDPOINT_KEY": secrets.token_urlsafe(32),
        "SALESRISK_SERVE_PORT": str(free_port()),
    }
    runs = {
        "win_probability": (win_probability.main, ["--iterations", "150", "--cv-folds", "3"]),
        "risk_scoring_global": (risk_scoring.main, ["--iterations", "200"]),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        server = start_server(int(env["SALESRISK_SERVE_PORT"]), "--log-flush-seconds", "0.3", env=env,
                              log_name="server-trained.log")
        try:
            paths = {}
            for key, (main, extra) in runs.items():
                out = root / key
                assert main(["--training-data", str(data), "--output", str(out), *extra]) == 0
                run = json.loads((out / "run.json").read_text())
                version = registry.register_run_model(run["run_id"], run["model_name"])
                deployed = endpoints.deploy(key, run["model_name"], version)
                paths[key] = state.load().endpoints[key].deployments[deployed.colour].path
        except BaseException:
            stop_server(server)
            raise
    held_out = opportunities(300, 99).select(FEATURES).to_pandas()
    yield Trained(server.url, env["SALESRISK_ENDPOINT_KEY"], paths, held_out)
    stop_server(server)


def post(trained: Trained, key: str, frame: pd.DataFrame, params: dict | None = None) -> httpx.Response:
    body: dict = {"input_data": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}
    if params is not None:
        body["params"] = params
    return httpx.post(f"{trained.url}/score/{key}", json=body, headers={"Authorization": f"Bearer {trained.key}"}, timeout=60)


@pytest.mark.parametrize("key", KEYS)
def test_top_factors_are_objects_equal_to_the_in_process_prediction(trained, key):
    frame = trained.held_out.head(40)
    response = post(trained, key, frame)
    assert response.status_code == 200, response.text
    rows = response.json()
    model = mlflow.pyfunc.load_model(trained.paths[key])
    expected = model.predict(frame)

    assert list(expected.columns) == [OUTPUT[key], "top_factors"]
    assert [list(row) for row in rows] == [[OUTPUT[key], "top_factors"]] * len(frame)
    np.testing.assert_allclose([r[OUTPUT[key]] for r in rows], expected[OUTPUT[key]], rtol=0, atol=1e-12)
    assert [r["top_factors"] for r in rows] == json.loads(json.dumps(expected["top_factors"].tolist()))
    for row, (_, sent) in zip(rows, frame.iterrows()):
        factors = row["top_factors"]
        assert len(factors) == tabular.TOP_FACTORS
        assert all(set(f) == {"feature", "value", "contribution"} for f in factors)
        assert all(f["value"] == sent[f["feature"]] for f in factors)  # the row's own input value
        sizes = [abs(f["contribution"]) for f in factors]
        assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0


@pytest.mark.parametrize("key", KEYS)
def test_the_switch_turns_factors_off_over_http_and_in_process(trained, key):
    frame = trained.held_out.head(25)
    model = mlflow.pyfunc.load_model(trained.paths[key])
    lean = model.predict(frame, params={"top_factors": False})  # MLflow passes the declared param on
    full = model.predict(frame)
    assert list(lean.columns) == [OUTPUT[key]]
    np.testing.assert_allclose(lean[OUTPUT[key]], full[OUTPUT[key]], rtol=0, atol=0)

    for params in ({"top_factors": False}, {"top_factors": "false"}):
        response = post(trained, key, frame, params)
        assert response.status_code == 200, response.text
        rows = response.json()
        assert all(list(r) == [OUTPUT[key]] for r in rows)
        np.testing.assert_allclose([r[OUTPUT[key]] for r in rows], lean[OUTPUT[key]], rtol=0, atol=1e-12)
    assert "top_factors" in post(trained, key, frame.head(1), {"top_factors": True}).json()[0]


def test_served_factors_are_catboosts_exact_shap_values(trained):
    """The kept per-leaf table gives CatBoost's own exact SHAP values, not an approximation."""
    from catboost import Pool

    frame = trained.held_out
    win = mlflow.pyfunc.load_model(trained.paths["win_probability"]).unwrap_python_model()
    served = win._fast.contributions(frame.to_numpy(dtype=np.float64))
    np.testing.assert_allclose(served, win._model.contributions(frame), rtol=0, atol=1e-9)

    risk = mlflow.pyfunc.load_model(trained.paths["risk_scoring_global"]).unwrap_python_model()
    exact = risk._model.get_feature_importance(Pool(frame), type="ShapValues")[:, :-1]
    np.testing.assert_allclose(risk._explain(frame.to_numpy(dtype=np.float64)), exact, rtol=0, atol=1e-9)


def test_endpoints_lists_columns_units_and_an_example_that_scores(trained):
    listing = httpx.get(f"{trained.url}/endpoints", headers={"Authorization": f"Bearer {trained.key}"}).json()
    for key in KEYS:
        endpoint = listing["endpoints"][key]
        described = endpoint["deployments"][endpoint["live"]]
        assert [c["name"] for c in described["inputs"]] == FEATURES
        assert {c["type"] for c in described["inputs"]} == {"number"}
        assert described["outputs"] == [OUTPUT[key], "top_factors"]
        assert {"name": "top_factors", "type": "boolean", "default": True} in described["params"]
        units = described["top_factors"]["units"]
        assert ("log-odds" if key == "win_probability" else "risk-score points") in units
        example = described["example"]
        response = httpx.post(endpoint["scoring_url"], json=example, headers={"Authorization": f"Bearer {trained.key}"})
        assert response.status_code == 200, response.text
        assert len(response.json()[0]["top_factors"]) == tabular.TOP_FACTORS


def test_openapi_examples_score_and_docs_load_offline(trained):
    spec = httpx.get(f"{trained.url}/openapi.json").json()
    operation = spec["paths"]["/score/{key}"]["post"]
    scheme = spec["components"]["securitySchemes"]["endpointKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert operation["security"] == [{"endpointKey": []}] and spec["paths"]["/endpoints"]["get"]["security"] == [{"endpointKey": []}]
    factor = operation["responses"]["200"]["content"]["application/json"]["schema"]["items"]["properties"]["top_factors"]
    assert "log-odds" in factor["items"]["properties"]["contribution"]["description"]
    for example in operation["requestBody"]["content"]["application/json"]["examples"].values():
        for key in KEYS:
            response = httpx.post(f"{trained.url}/score/{key}", json=example["value"],
                                  headers={"Authorization": f"Bearer {trained.key}"})
            assert response.status_code == 200, (key, response.text)
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{trained.url}{page}").text
        assert "cdn" not in html.lower()
        assets = [part.split('"')[0] for part in html.split('"/static-offline-docs/')[1:]]
        assert assets
        for asset in assets:
            response = httpx.get(f"{trained.url}/static-offline-docs/{asset}")
            assert response.status_code == 200 and len(response.content) > 100, asset


@pytest.mark.parametrize("key", KEYS)
def test_few_row_requests_are_scored_from_the_split_table_as_catboost_scores_them(trained, key):
    """One and three rows take the model's split table (models/oblivious_trees.py) on the server;
    the answers are CatBoost's own predictions of the saved model."""
    model = mlflow.pyfunc.load_model(trained.paths[key]).unwrap_python_model()
    trees = model._fast.trees if key == "win_probability" else model._trees
    assert trees is not None  # the trainers' numeric models are covered
    for rows in (1, 3):
        frame = trained.held_out.iloc[7 : 7 + rows]
        assert trees.takes(frame.to_numpy(dtype=np.float64))
        if key == "win_probability":
            expected = model._model.probability(frame)  # the fold classifiers and the calibrator themselves
        else:
            expected = np.clip(model._model.predict(frame), *model.target_range)
        for params in ({"top_factors": False}, None):
            response = post(trained, key, frame, params)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose([r[OUTPUT[key]] for r in response.json()], expected, rtol=0, atol=1e-12)


def test_each_loaded_version_runs_the_code_packed_with_it(trained, tmp_path, monkeypatch):
    """Blue and green in one server: a version whose packed code differs runs its own code, not
    the code of the version loaded first (MLflow alone reuses the package imported first)."""
    import shutil
    import sys

    from deployments.serve.live import load_scorer

    monkeypatch.setattr(sys, "path", list(sys.path))  # MLflow puts each model's code folder first

    folders = {}
    for name in ("blue", "green"):
        folder = tmp_path / name
        shutil.copytree(trained.paths["risk_scoring_global"], folder)
        with open(folder / "code" / "models" / "risk_scoring.py", "a") as module:
            module.write(f"\nPACKED_WITH = {name!r}\n")
        folders[name] = folder
    ours = sys.modules["models.risk_scoring"]
    loaded = {name: load_scorer(str(folder)) for name, folder in folders.items()}
    assert sys.modules["models.risk_scoring"] is ours  # this process's own import is left as it was
    for name, scorer in loaded.items():
        python_model = scorer.model.unwrap_python_model()
        assert type(python_model).load_context.__globals__.get("PACKED_WITH") == name  # its own module
        assert python_model._trees is not None
