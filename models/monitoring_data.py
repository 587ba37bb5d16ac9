"""What monitoring reads and keeps: the inference-log window, outcomes, revenue actuals, the live
version's training reference, and the drift history under ``<lake>/ml_monitoring``.

The arithmetic is in :mod:`models.monitoring`; this module only finds rows and lines them up, so
:func:`check_endpoint` is the one place that decides which logged prediction meets which outcome.

Joining predictions to outcomes needs the opportunity a prediction was for. The serving layer logs
the columns of the model's signature (ids are dropped), so the key is taken from an
``opportunity_id`` column when a logged input has one, else from the request id of a one-row
request: send ``x-request-id: <opportunity_id>`` when scoring one opportunity per request.
"""

from __future__ import annotations

import io
import logging
import tempfile
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from models import monitoring
from salesrisk import catalog, storage

log = logging.getLogger("salesrisk.monitoring")

MONITORING_TABLE = "ml_monitoring"
HISTORY_FOLDER = "history"
REPORTS_FOLDER = "reports"
DRIFT_PNG = "drift_over_time.png"
KEY = "opportunity_key"
POSITION = "__position"
REQUEST = "__request"

def performance_kind(endpoint_key: str) -> str | None:
    """What an endpoint's live performance is measured as (its spec's ``performance``); None when
    no outcome arrives for its predictions (trajectory outcomes are future snapshots, scored by the
    retraining gate; anomalies get no labels)."""
    return catalog.spec_of_endpoint(endpoint_key).performance


def model_id_of(endpoint_key: str) -> str:
    return catalog.spec_of_endpoint(endpoint_key).model_id


# --- inference logs ---------------------------------------------------------------------------


def inference_window(
    lake: str,
    endpoint_key: str,
    since: datetime,
    *,
    model_name: str | None = None,
    version: str | None = None,
) -> pl.DataFrame:
    """Logged requests of one endpoint since ``since`` (UTC), optionally of one model version;
    empty when nothing was logged. Only the date partitions from ``since`` on are opened."""
    table = storage.join(lake, catalog.ML_INFERENCE_LOGS)
    # an industry slot's rows are logged by the endpoint that routed them, with the model's name
    endpoint_key = catalog.split_slot(endpoint_key)[0]
    first_day = since.date().isoformat()
    try:
        scan = storage.scan_dataset(
            table,
            where={"endpoint": lambda value: value == endpoint_key, "date": lambda value: value >= first_day},
            hive_schema={"endpoint": pl.String, "date": pl.Date},
        )
    except storage.StorageError:
        return pl.DataFrame()
    frame = scan.filter(pl.col("logged_at") >= since).collect()
    if model_name is not None:
        frame = frame.filter(pl.col("model_name") == model_name)
    if version is not None:
        frame = frame.filter(pl.col("model_version").cast(pl.String) == str(version))
    return frame


def decode_records(window: pl.DataFrame, column: str) -> pl.DataFrame:
    """One row per JSON record of ``column`` (``inputs`` or ``outputs``), with the request's
    ``request_id``, ``logged_at``, ``rows`` and the record's position in the request.

    All requests are parsed in one pass by polars' NDJSON reader (one line per request)."""
    if window.is_empty():
        return pl.DataFrame()
    lines = window.with_row_index(REQUEST).select(
        pl.concat_str([pl.lit('{"' + REQUEST + '":'), pl.col(REQUEST).cast(pl.String), pl.lit(',"r":'), pl.col(column), pl.lit("}")])
    ).to_series()
    parsed = pl.read_ndjson(io.BytesIO("\n".join(lines.to_list()).encode()), infer_schema_length=None)
    records = (
        parsed.explode("r")
        .filter(pl.col("r").is_not_null())
        .with_columns(pl.int_range(pl.len()).over(REQUEST).alias(POSITION))
        .unnest("r")
    )
    meta = window.with_row_index(REQUEST).select(REQUEST, "request_id", "logged_at", "rows")
    return records.with_columns(pl.col(REQUEST).cast(pl.UInt32)).join(meta, on=REQUEST, how="left").drop(REQUEST)


def scored_rows(window: pl.DataFrame) -> pl.DataFrame:
    """Inputs and outputs of tabular requests side by side (same position in the same request);
    an output column named like an input gets the suffix ``_output``."""
    inputs, outputs = decode_records(window, "inputs"), decode_records(window, "outputs")
    if inputs.is_empty() or outputs.is_empty():
        return inputs
    outputs = outputs.drop("logged_at", "rows")
    return inputs.join(outputs, on=["request_id", POSITION], how="inner", suffix="_output")


def with_opportunity_key(rows: pl.DataFrame) -> pl.DataFrame:
    """``opportunity_key``: the logged ``opportunity_id``, else the request id of a one-row request."""
    if "opportunity_id" in rows.columns:
        return rows.with_columns(pl.col("opportunity_id").cast(pl.String).alias(KEY))
    return rows.with_columns(pl.when(pl.col("rows") == 1).then(pl.col("request_id")).otherwise(None).alias(KEY))


# --- outcomes and actuals ---------------------------------------------------------------------


def outcomes(lake: str, since: date | None = None) -> pl.DataFrame:
    """Closed opportunities (``opportunity_id``, ``target_win``, ``closed_date``) closed on or
    after ``since``; empty when none have arrived."""
    table = storage.join(lake, catalog.ML_OUTCOMES)
    where = None
    if since is not None:
        month = since.replace(day=1).isoformat()
        where = {"partition_date": lambda value: value >= month}
    try:
        frame = storage.scan_dataset(table, where=where).select("opportunity_id", catalog.WIN_TARGET, "closed_date").collect()
    except storage.StorageError:
        return pl.DataFrame(schema={"opportunity_id": pl.String, catalog.WIN_TARGET: pl.Int32, "closed_date": pl.Date})
    return frame.filter(pl.col("closed_date") >= since) if since is not None else frame


def match_outcomes(rows: pl.DataFrame, closed: pl.DataFrame) -> pl.DataFrame:
    """Each closed opportunity's latest logged prediction made on or before its close date."""
    if rows.is_empty() or closed.is_empty() or KEY not in rows.columns:
        return pl.DataFrame()
    joined = rows.filter(pl.col(KEY).is_not_null()).join(
        closed.with_columns(pl.col("opportunity_id").cast(pl.String)), left_on=KEY, right_on="opportunity_id", how="inner"
    )
    joined = joined.filter(pl.col("logged_at").dt.date() <= pl.col("closed_date"))
    return joined.sort("logged_at").group_by(KEY, maintain_order=True).last()


def revenue_actuals(lake: str, since: date | None = None) -> pl.DataFrame:
    """Daily revenue summed over tenants (as the forecast's training input is built)."""
    table = storage.join(lake, catalog.REVENUE_DAILY)
    try:
        frame = storage.scan_dataset(table).select("date", "revenue").collect()
    except storage.StorageError:
        return pl.DataFrame(schema={"date": pl.Date, "revenue": pl.Float64})
    if since is not None:
        frame = frame.filter(pl.col("date") >= since)
    return frame.group_by("date").agg(pl.col("revenue").sum()).sort("date")


def _as_date(column: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return pl.col(column).str.to_datetime(strict=False).dt.date()
    if dtype.is_temporal():
        return pl.col(column).cast(pl.Date)
    return pl.from_epoch(pl.col(column).cast(pl.Int64), time_unit="ms").dt.date()


def forecast_vs_actuals(window: pl.DataFrame, actuals: pl.DataFrame) -> pl.DataFrame:
    """The latest logged forecast of each date that now has an actual: ``date``, ``yhat``,
    ``yhat_lower``, ``yhat_upper``, ``revenue``."""
    outputs = decode_records(window, "outputs")
    if outputs.is_empty() or "yhat" not in outputs.columns or "ds" not in outputs.columns:
        return pl.DataFrame()
    forecasts = (
        outputs.with_columns(_as_date("ds", outputs.schema["ds"]).alias("date"))
        .filter(pl.col("logged_at").dt.date() <= pl.col("date"))  # a forecast, not a backcast
        .sort("logged_at")
        .group_by("date", maintain_order=True)
        .last()
    )
    return forecasts.join(actuals, on="date", how="inner").sort("date")


# --- reference --------------------------------------------------------------------------------


def reference_for_version(model_name: str, version: str) -> tuple[pl.DataFrame | None, str]:
    """The training data of a registered version: the reference sample its run logged
    (``monitoring/reference.parquet``, see models/reports.py), else the file its ``training_data``
    tag names. Returns (frame or None, where it came from or why there is none)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from models import reports
    from salesrisk import registry

    client = registry.client()
    version_info = client.get_model_version(model_name, str(version))
    artifact = f"{reports.REFERENCE_PATH}/{reports.REFERENCE_FILE}"
    if version_info.run_id:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = mlflow.artifacts.download_artifacts(run_id=version_info.run_id, artifact_path=artifact, dst_path=tmp)
                return pl.read_parquet(path), f"run {version_info.run_id} artifact {artifact}"
        except (MlflowException, OSError) as error:
            log.info("%s v%s: no %s on its run (%s)", model_name, version, artifact, error)
    uri = (version_info.tags or {}).get("training_data")
    if uri:
        try:
            return storage.read_parquet(uri), f"training data {uri}"
        except (storage.StorageError, OSError) as error:
            return None, f"training data {uri} is not readable: {error}"
    return None, f"neither a {artifact} on run {version_info.run_id} nor a training_data tag on the version"


# --- one endpoint -----------------------------------------------------------------------------


def check_endpoint(
    endpoint_key: str,
    model_name: str,
    version: str,
    lake: str,
    thresholds: monitoring.Thresholds,
    *,
    now: datetime,
    window_days: int,
    outcome_days: int,
) -> monitoring.EndpointCheck:
    """Drift of the live version's inputs over the last ``window_days`` against its training
    reference, and its live performance on the outcomes of predictions from the last
    ``outcome_days``; breaches against ``thresholds``. Only rows the live version scored count, so
    after a rollback the restored version is judged on its own predictions."""
    check = monitoring.EndpointCheck(endpoint_key, model_name, str(version))
    window = inference_window(lake, endpoint_key, now - timedelta(days=window_days), model_name=model_name, version=version)
    inputs = decode_records(window, "inputs")
    check.window_rows = inputs.height
    reference, check.reference_source = reference_for_version(model_name, version)
    if reference is None:
        check.notes.append(f"drift not measured: {check.reference_source}")
    elif inputs.height < thresholds.min_rows:
        check.notes.append(
            f"drift not measured: {inputs.height} logged rows in the last {window_days} days (< {thresholds.min_rows})"
        )
    else:
        drift = monitoring.feature_drift(reference, inputs.drop(POSITION, "rows", strict=False), thresholds, list(reference.columns))
        check.drift = [d.as_dict() for d in drift]
        if not drift:
            check.notes.append("drift not measured: no numeric feature both in the reference and the logged inputs")
    kind = performance_kind(endpoint_key)
    if kind is not None:
        since = now - timedelta(days=outcome_days)
        history = inference_window(lake, endpoint_key, since, model_name=model_name, version=version)
        check.performance = live_performance(kind, history, lake, since.date())
        if check.performance.get("rows", 0) < thresholds.min_rows:
            check.notes.append(
                f"live performance not judged: {int(check.performance.get('rows', 0))} predictions with a known outcome "
                f"(< {thresholds.min_rows})"
            )
    else:
        check.notes.append("no live performance for this endpoint (no outcomes arrive for its predictions)")
    rules = monitoring.performance_rules(kind, thresholds)
    drift_objects = [monitoring.FeatureDrift(**d) for d in check.drift]
    check.breaches = [b.as_dict() for b in monitoring.evaluate_breaches(drift_objects, check.performance, rules, thresholds)]
    return check


def live_performance(kind: str, window: pl.DataFrame, lake: str, since: date) -> dict[str, float]:
    """The live metrics of ``kind`` on the predictions in ``window`` whose outcome is known."""
    if window.is_empty():
        return {"rows": 0.0}
    if kind == "forecast":
        matched = forecast_vs_actuals(window, revenue_actuals(lake, since))
        if matched.is_empty():
            return {"rows": 0.0}
        return monitoring.forecast_performance(
            matched.get_column("revenue").to_numpy(),
            matched.get_column("yhat").to_numpy(),
            matched.get_column("yhat_lower").to_numpy() if "yhat_lower" in matched.columns else None,
            matched.get_column("yhat_upper").to_numpy() if "yhat_upper" in matched.columns else None,
        )
    matched = match_outcomes(with_opportunity_key(scored_rows(window)), outcomes(lake, since))
    column = "win_probability" if kind == "win_probability" else "risk_score"
    column = f"{column}_output" if f"{column}_output" in matched.columns else column
    if matched.is_empty() or column not in matched.columns:
        return {"rows": 0.0}
    won = matched.get_column(catalog.WIN_TARGET).cast(pl.Int64).to_numpy()
    predicted = matched.get_column(column).cast(pl.Float64).to_numpy()
    if kind == "win_probability":
        return monitoring.win_probability_performance(won, predicted)
    return monitoring.risk_score_performance(1 - won, predicted)  # realised target_risk


# --- history ----------------------------------------------------------------------------------


def history_uri(lake: str) -> str:
    return storage.join(lake, MONITORING_TABLE, HISTORY_FOLDER)


def append_history(lake: str, frame: pl.DataFrame, at: datetime) -> str | None:
    """Add one monitoring run's rows as a new file (never rewriting earlier ones)."""
    if frame.is_empty():
        return None
    stamp = at.strftime("%Y%m%dT%H%M%S%f")
    uri = storage.join(history_uri(lake), f"date={at.date().isoformat()}", f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet")
    return storage.write_parquet(frame, uri)


def read_history(lake: str, since: datetime | None = None) -> pl.DataFrame:
    """Every monitoring run's rows (``date`` partitions from ``since`` on); empty before the first."""
    first = since.date().isoformat() if since else None
    try:
        scan = storage.scan_dataset(
            history_uri(lake), where={"date": lambda v: v >= first} if first else None, hive_schema={"date": pl.Date}
        )
    except storage.StorageError:
        return monitoring.history_frame([], datetime.now(timezone.utc))
    return scan.collect().drop("date", strict=False).sort("checked_at")


def write_drift_png(lake: str, history: pl.DataFrame, threshold: float, local: Path) -> str:
    """Draw drift over time at ``local`` and store a copy as
    ``<lake>/ml_monitoring/reports/drift_over_time.png``; return that URI."""
    from models import reports

    reports.drift_over_time(monitoring.drift_series(history), local, threshold)
    uri = storage.join(lake, MONITORING_TABLE, REPORTS_FOLDER, DRIFT_PNG)
    storage.write_bytes(local.read_bytes(), uri)
    return uri
