"""The scorer checks rows itself and calls the model's own predict, skipping MLflow's enforcement.

Two proofs that skipping it changes nothing a caller sees: (1) for every trainer's own saved model
(all five endpoint kinds, trained here in-process on small generated data) the served prediction
equals ``PyFuncModel.predict`` on the same rows, in both request shapes and with the
``top_factors`` switch; (2) for a model signed with every plain column type the frame the model
receives is the one MLflow's enforcement hands it, and each kind of bad value is a 422 naming the
column, the row and the expected type.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import importlib.util
import io
import json
import os
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
import pytest

from deployments.serve.scoring import PayloadError, Scorer, parse
from tests.serving.test_trained_models_http import FEATURES, opportunities

pytestmark = pytest.mark.slow

_SEQUENCE_DATA = Path(__file__).resolve().parents[1] / "model" / "sequence_data.py"


def _sequence_data():
    spec = importlib.util.spec_from_file_location("serving_sequence_data", _SEQUENCE_DATA)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _train(module: str, data: Path, root: Path, *extra: str) -> Path:
    """``models.<module>.main`` in this process, run from a folder of its own; the saved model's path."""
    cwd, output = root / f"{module}-cwd", root / f"{module}-out"
    cwd.mkdir(parents=True)
    previous, err = Path.cwd(), io.StringIO()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err):
            code = importlib.import_module(f"models.{module}").main(
                ["--training-data", str(data), "--output", str(output), *extra]
            )
    finally:
        os.chdir(previous)
    assert code == 0, err.getvalue()[-3000:]
    return output / "model"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, pd.DataFrame]]:
    """endpoint key -> (the trainer's saved model folder, rows a caller sends it)."""
    root = tmp_path_factory.mktemp("direct-scoring")
    sequences = _sequence_data()
    deals = root / "deals.parquet"
    opportunities(600, 5).write_parquet(deals)
    held_out = opportunities(40, 99)
    snapshots = root / "snapshots.parquet"
    frame = sequences.snapshot_frame(60, seed=0)
    frame.write_parquet(snapshots)
    revenue = root / "revenue.parquet"
    sequences.revenue_frame(160, "weekly", seed=0).write_parquet(revenue)
    anomaly_rows = held_out.select(FEATURES).with_columns(risk_score=pl.lit(0.3))

    out: dict[str, tuple[Path, pd.DataFrame]] = {}
    out["win_probability"] = (
        _train("win_probability", deals, root, "--iterations", "60", "--cv-folds", "2"),
        held_out.select(FEATURES).to_pandas(),
    )
    out["risk_scoring_global"] = (_train("risk_scoring", deals, root, "--iterations", "60"), held_out.select(FEATURES).to_pandas())
    anomaly_data = root / "anomaly.parquet"
    opportunities(400, 7).select(FEATURES).with_columns(risk_score=pl.Series(np.random.default_rng(1).uniform(0, 1, 400))).write_parquet(anomaly_data)
    out["anomaly"] = (_train("anomaly", anomaly_data, root, "--param-n-estimators", "30"), anomaly_rows.to_pandas())
    trajectory = _train("risk_trajectory", snapshots, root, "--epochs", "2", "--hidden-size", "8")
    columns = mlflow.models.Model.load(str(trajectory)).get_input_schema().input_names()
    histories = frame.sort("opportunityId", "snapshotDate").group_by("opportunityId", maintain_order=True).tail(30)
    picked = histories.filter(pl.col("opportunityId").is_in(histories["opportunityId"].unique(maintain_order=True).head(3)))
    out["risk_trajectory_lstm"] = (trajectory, picked.select(columns).to_pandas())
    forecaster = _train("revenue_forecast", revenue, root, "--epochs", "5", "--origins", "2")
    column = mlflow.models.Model.load(str(forecaster)).get_input_schema().input_names()[0]
    last = pl.read_parquet(revenue)["date"].max()
    future = [last + dt.timedelta(days=7 * i) for i in range(1, 13)]
    out["revenue_forecasting"] = (forecaster, pd.DataFrame({column: pd.to_datetime(future)}))
    return out


def _bodies(rows: pd.DataFrame, params: dict | None) -> list[bytes]:
    """The split and the records request shapes, encoded as a client encodes them."""
    split = json.loads(rows.to_json(orient="split", date_format="iso", index=False))
    records = json.loads(rows.to_json(orient="records", date_format="iso"))
    body: dict = {"input_data": {"columns": split["columns"], "data": split["data"]}}
    if params is not None:
        body["params"] = params
        return [json.dumps(body).encode(), json.dumps({"input_data": records, "params": params}).encode()]
    return [json.dumps(body).encode(), json.dumps(records).encode()]


def _pyfunc_frame(columns: list[str] | None, rows: list) -> pd.DataFrame:
    """The rows as a plain frame, the way a caller hands them to PyFuncModel.predict in process."""
    return pd.DataFrame(rows, columns=columns) if columns is not None else pd.DataFrame.from_records(rows)


@pytest.mark.parametrize(
    "key", ["win_probability", "risk_scoring_global", "anomaly", "risk_trajectory_lstm", "revenue_forecasting"]
)
def test_every_trainers_model_is_scored_directly_and_equals_its_pyfunc(trained, key):
    path, rows = trained[key]
    model = mlflow.pyfunc.load_model(str(path))
    scorer = Scorer(model, str(path))
    assert scorer.direct, f"{key}: the scorer fell back to MLflow's enforcement"
    factors = "top_factors" in (model.metadata.get_output_schema().input_names())
    for params in ([None, {"top_factors": False}, {"top_factors": True}] if factors else [None]):
        for body in _bodies(rows, params):
            columns, parsed, sent = parse(body)
            ours = scorer.predict(scorer.frame(columns, parsed), sent)
            theirs = model.predict(_pyfunc_frame(columns, parsed), params=sent)
            pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs.reset_index(drop=True), check_exact=True)
            assert json.loads(scorer.encode(ours)) == json.loads(scorer.encode(theirs))
    if factors:
        columns, parsed, _ = parse(_bodies(rows, None)[0])
        frame = scorer.frame(columns, parsed)
        assert "top_factors" not in scorer.predict(frame, {"top_factors": False}).columns
        # the switch as a form or query string sends it
        pd.testing.assert_frame_equal(scorer.predict(frame, {"top_factors": "false"}), scorer.predict(frame, {"top_factors": False}))
        with pytest.raises(PayloadError) as refused:
            scorer.predict(frame, {"top_factors": "perhaps"})
        assert refused.value.status == 422 and "top_factors" in refused.value.message


# --- every plain column type -----------------------------------------------------------------


class Echo(mlflow.pyfunc.PythonModel):
    """Returns the frame it was handed, so a test sees exactly what reached the model."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return model_input.assign(answer=1.0)


TYPED = pd.DataFrame(
    {
        "name": ["a", "b", None],
        "count": [1, 2, 3],
        "small": np.array([1, 2, 3], dtype=np.int32),
        "flag": [True, False, True],
        "amount": [1.5, 2.0, None],
        "ratio": np.array([0.5, 1.0, 2.0], dtype=np.float32),
        "at": pd.to_datetime(["2025-01-31", "2025-02-01T09:30:00", None], format="ISO8601"),
    }
)


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    from mlflow.models import infer_signature

    path = tmp_path_factory.mktemp("echo") / "model"
    signature = infer_signature(TYPED.dropna())
    mlflow.pyfunc.save_model(str(path), python_model=Echo(), signature=signature)
    model = mlflow.pyfunc.load_model(str(path))
    return Scorer(model, str(path))


def test_a_model_signed_with_every_plain_type_gets_the_frame_mlflow_would_give_it(echo):
    assert echo.direct and echo.types == {
        "name": "string", "count": "long", "small": "integer", "flag": "boolean", "amount": "double",
        "ratio": "float", "at": "datetime",
    }
    rows = TYPED.dropna()  # MLflow refuses nulls in the integer and string columns alike
    for body in _bodies(rows, None):
        columns, parsed, _ = parse(body)
        ours = echo.predict(echo.frame(columns, parsed))
        # JSON has one kind of integer and of real: in process MLflow refuses int64 for an
        # ``integer`` column and float64 for a ``float`` one, so those two get the signature's width
        # first (what MLflow's own HTTP parser gives them)
        theirs = echo.model.predict(_pyfunc_frame(columns, parsed).astype({"small": np.int32, "ratio": np.float32}))
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    # nulls where MLflow lets them through: text, numbers, dates
    body = _bodies(TYPED[["name", "count", "small", "flag", "amount", "ratio", "at"]], None)[0]
    columns, parsed, _ = parse(body)
    frame = echo.frame(columns, parsed)
    assert frame["name"].tolist() == ["a", "b", None] and np.isnan(frame["amount"].iloc[2]) and pd.isna(frame["at"].iloc[2])
    assert str(frame["at"].dtype) == "datetime64[ns]" and frame["count"].dtype == np.int64 and frame["ratio"].dtype == np.float32
    # an in-process caller's frame holds date objects, not text: taken as they are
    rows = TYPED.dropna().reset_index(drop=True)
    objects = echo.frame(list(rows.columns), rows.astype(object).values.tolist())
    pd.testing.assert_series_equal(objects["at"], rows["at"].astype("datetime64[ns]"))


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("name", 7, "expected a string, got 7"),
        ("count", 2.5, "expected an integer"),
        ("count", None, "integer columns cannot hold nulls"),
        ("small", 2**40, "between -2147483648 and 2147483647"),
        ("flag", "yes", "expected true, false or null, got 'yes'"),
        ("amount", "lots", "expected a number, got 'lots'"),
        ("amount", [1, 2], "expected a number"),
        ("at", "next week", "expected an ISO 8601 date"),
        ("at", "2025-01-31T09:30:00+02:00", "without a time zone"),
        ("at", 20250131, "expected an ISO 8601 date"),
    ],
)
def test_each_bad_value_is_a_422_naming_column_row_and_type(echo, column, value, expected):
    rows = TYPED.dropna().reset_index(drop=True)
    body = json.loads(_bodies(rows, None)[0])
    body["input_data"]["data"][1][list(rows.columns).index(column)] = value
    columns, parsed, _ = parse(json.dumps(body).encode())
    with pytest.raises(PayloadError) as refused:
        echo.frame(columns, parsed)
    assert refused.value.status == 422
    assert f"column {column!r} row 1" in refused.value.message and expected in refused.value.message
    # the records shape names the same column and row
    records = json.loads(_bodies(rows, None)[1])
    records[1][column] = value
    with pytest.raises(PayloadError) as again:
        echo.frame(*parse(json.dumps(records).encode())[:2])
    assert again.value.message == refused.value.message


def test_missing_columns_and_short_rows_are_refused_before_the_model(echo):
    rows = TYPED.dropna().reset_index(drop=True)
    records = json.loads(_bodies(rows, None)[1])
    del records[0]["at"]
    with pytest.raises(PayloadError) as refused:
        echo.frame(*parse(json.dumps(records).encode())[:2])
    assert refused.value.status == 422 and "missing column(s) ['at']" in refused.value.message
    body = json.loads(_bodies(rows, None)[0])
    body["input_data"]["data"][0] = body["input_data"]["data"][0][:3]
    with pytest.raises(PayloadError) as short:
        echo.frame(*parse(json.dumps(body).encode())[:2])
    assert short.value.status == 400 and "7 values, one per column" in short.value.message
