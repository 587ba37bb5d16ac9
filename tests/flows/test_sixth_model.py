"""A sixth model, defined only here: a linear model of a deal's amount on two columns.

Registering its spec (``register`` below) is the only change: the model flow built from the spec
prepares its input from the lake, trains it with its own command line, gates it, registers it,
deploys it to the local endpoint server, answers a scored request over HTTP and is rolled back.
The prepare and trainer steps and the endpoint server are other processes: they learn of the
model through ``SALESRISK_MODEL_SPECS`` (salesrisk/catalog.py), which names ``register``.

This file is also the toy's trainer module: ``python -m tests.flows.test_sixth_model``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from models import contracts, specs, splits, trainer
from models import prepare as prep
from salesrisk import catalog

MODEL_ID = "toy_amount"
FEATURES = ("probability", "days_to_close")
TARGET = "amount"
ROOT = Path(__file__).resolve().parents[2]

SPEC = catalog.ModelSpec(
    model_id=MODEL_ID,
    registered_name="toy-amount-linear",
    endpoint_key="toy_amount",
    scores=(catalog.Metric("RMSE", higher_is_better=False), catalog.Metric("MAE", higher_is_better=False)),
    sources=(catalog.RISK_EVALUATIONS,),
    flow_name="toy-amount",
    description="Train a linear model of a deal's amount on two columns; deploy it if it passes the gate.",
)


# --- the toy's preparation, contract and trainer -------------------------------------------------


def prepare_input(inp: specs.PrepareInputs) -> specs.Prepared:
    uri = inp.uris[catalog.RISK_EVALUATIONS]
    columns = ("tenant_id", "opportunity_id", "evaluation_date", TARGET, *FEATURES)
    frame = prep.read_table(catalog.RISK_EVALUATIONS, uri, inp.scope, columns).collect()
    return specs.Prepared(frame.drop_nulls([TARGET, *FEATURES]), [uri])


def contract(names: Sequence[str], features: Sequence[str]) -> tuple:
    return (contracts.Column(TARGET, "numeric"), contracts.NotNull(TARGET))


def split(df: pl.DataFrame, seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame]:
    train, test = splits.split_positions(df, (0.8, 0.2), seed)
    return df[train], df[test]


def holdout(df: pl.DataFrame, seed: int = 42) -> pl.DataFrame:
    return split(df, seed)[1]


def evaluate(predictor, df: pl.DataFrame) -> dict[str, float]:
    predicted = np.asarray(predictor.predict(df.select(pl.col(FEATURES).cast(pl.Float64)).to_pandas()), dtype="float64").ravel()
    error = predicted - df.get_column(TARGET).to_numpy().astype("float64")
    return {"RMSE": float(np.sqrt(np.mean(error**2))), "MAE": float(np.mean(np.abs(error)))}


def fit(df: pl.DataFrame, features: list[str], args: argparse.Namespace, model_dir: Path) -> trainer.FitResult:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    train_df, test_df = split(df, args.seed)
    x = train_df.select(pl.col(features).cast(pl.Float64)).to_pandas()  # JSON numbers arrive as floats
    model = LinearRegression().fit(x, train_df.get_column(TARGET).to_numpy())
    mlflow.sklearn.save_model(model, str(model_dir), signature=infer_signature(x, model.predict(x)),
                              input_example=x.head(3))
    return trainer.FitResult(evaluate(mlflow.pyfunc.load_model(str(model_dir)), test_df))


def main(argv: Sequence[str] | None = None) -> int:
    parser = trainer.build_parser(MODEL_ID, "toy linear model")
    return trainer.run(MODEL_ID, parser, fit, FEATURES, argv)


BINDING = specs.ModelBinding(
    SPEC,
    prepare=prepare_input,
    contract=contract,
    trainer=specs.Trainer(__name__ if __name__ != "__main__" else "tests.flows.test_sixth_model",
                          lambda: sys.modules[BINDING.trainer.module]),
    default_features=FEATURES,
)


def register() -> None:
    """The one change a new model needs (named by SALESRISK_MODEL_SPECS for the other processes)."""
    specs.register(BINDING)


if __name__ == "__main__":
    raise SystemExit(main())


# --- the test ------------------------------------------------------------------------------------

import pytest  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture()
def sixth_model(small_lake: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(catalog.MODEL_SPECS_VARIABLE, f"{__name__}:register")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with specs.registered(BINDING):
        yield small_lake


def test_sixth_model_goes_from_lake_to_http_and_back(sixth_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import httpx
    import mlflow

    from deployments import endpoints
    from flows.model_flow import flow_for
    from flows.rollback import rollback_model
    from salesrisk import registry
    from tests.serving.conftest import free_port, start_server, stop_server

    port = free_port()
    monkeypatch.setenv("SALESRISK_SERVE_PORT", str(port))
    server = start_server(port, "--poll-seconds", "0.05", log_name="sixth-model-server.log")
    try:
        model_flow = flow_for(MODEL_ID)
        assert {"training_data", "lake", "seed", "deploy"} <= set(model_flow.parameters.properties)
        first = asyncio.run(model_flow(seed=1))
        assert first.version == "1" and first.endpoint_key == "toy_amount"
        assert first.scoring_url and set(first.metrics) == {"RMSE", "MAE"}

        second = asyncio.run(model_flow(seed=2))  # a new run: gated against version 1 on fresh rows
        assert second.version == "2"
        assert "never trained on" in second.decision, second.decision
        gated_in = second.scoring_url is not None
        assert endpoints.current("toy_amount").version == ("2" if gated_in else "1")

        rows = pl.read_parquet(sorted((sixth_model / catalog.ML_TRAINING / MODEL_ID).rglob("prepared.parquet"))[0])
        sample = rows.select(pl.col(FEATURES).cast(pl.Float64)).head(4)
        response = httpx.post(f"{server.url}/score/toy_amount", json=sample.to_dicts(), headers=server.headers(), timeout=30)
        assert response.status_code == 200, response.text
        served = [next(iter(r.values())) for r in response.json()]
        live = endpoints.current("toy_amount")
        registry.configure()
        expected = mlflow.pyfunc.load_model(registry.model_uri(SPEC.registered_name, live.version)).predict(sample.to_pandas())
        assert np.allclose(served, np.asarray(expected).ravel())

        if gated_in:
            rolled = asyncio.run(rollback_model(endpoint="toy_amount", reason="sixth-model test"))
            assert rolled["version"] == "1" and endpoints.current("toy_amount").version == "1"
        else:  # the gate kept version 1: deploy 2 by force, then roll back to 1
            forced = asyncio.run(model_flow(seed=2, force=True))
            assert endpoints.current("toy_amount").version == forced.version
            rolled = asyncio.run(rollback_model(endpoint="toy_amount", reason="sixth-model test"))
            assert rolled["version"] == "1"
    finally:
        stop_server(server)
