"""Every contract rule fails on a frame that breaks it, with one error naming file and column,
and the step that checked it writes nothing.

Table rules go through the generator's writer (``synthetic.write_table``), training-input rules
through preparation's writer (``prepare.write_prepared``): the paths real data takes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from models import contracts, prepare, synthetic
from salesrisk import catalog
from tests.data.conftest import LAKE_ARGS, files_under

Mutation = Callable[[pl.DataFrame], pl.DataFrame]


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    spec = synthetic.make_spec(**LAKE_ARGS)
    return synthetic.build_tables(spec, spec.start, spec.end)


@pytest.fixture(scope="module")
def prepared(small_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    """Each model's valid prepared frame from the small lake (no top-up: real rows only)."""
    out = tmp_path_factory.mktemp("prepared")
    frames = {}
    for model_id in catalog.MODELS:
        result = prepare.prepare(
            model_id,
            risk_evaluations=str(small_lake / catalog.RISK_EVALUATIONS),
            ml_outcomes=str(small_lake / catalog.ML_OUTCOMES),
            output=str(out / model_id),
            top_up=False,
        )
        frames[model_id] = pl.read_parquet(result.output_uri)
    return frames


def _set(column: str, value, where: int | None = 3) -> Mutation:
    """Set ``column`` to ``value`` on the first ``where`` rows (all rows when None)."""

    def mutate(df: pl.DataFrame) -> pl.DataFrame:
        rows = pl.int_range(pl.len()) < (where if where is not None else df.height)
        literal = pl.lit(value, dtype=df.schema[column])
        return df.with_columns(pl.when(rows).then(literal).otherwise(pl.col(column)).alias(column))

    return mutate


def _flip_first(column: str, n: int) -> Mutation:
    rows = pl.int_range(pl.len()) < n
    return lambda df: df.with_columns(pl.when(rows).then(1 - pl.col(column)).otherwise(pl.col(column)).alias(column))


def _duplicate_first(n: int = 2) -> Mutation:
    return lambda df: pl.concat([df, df.head(n)])


def _assert_rejected(error: pytest.ExceptionInfo, uri: str, column: str, n_bad: int | None, written: Path) -> None:
    message = str(error.value)
    assert uri in message and uri in error.value.source
    assert column in error.value.column and f"'{error.value.column}'" in message
    assert error.value.expected and error.value.expected in message
    if n_bad is not None:
        assert error.value.n_bad == n_bad and f"{n_bad} row(s)" in message
    assert len(error.value.examples) <= contracts.MAX_EXAMPLES
    assert files_under(written) == [], "a rejected frame must leave nothing behind"


TABLE_CASES = [
    # (table, mutation, column named, rows breaking it)
    (catalog.RISK_EVALUATIONS, lambda df: df.drop("risk_score"), "risk_score", None),  # Column: missing
    (catalog.RISK_EVALUATIONS, lambda df: df.with_columns(pl.col("stage_encoded").cast(pl.String)), "stage_encoded", None),  # Column: dtype
    (catalog.RISK_EVALUATIONS, _set("amount", None), "amount", 3),  # NotNull
    (catalog.RISK_EVALUATIONS, _set("probability", 1.5), "probability", 3),  # InRange high
    (catalog.RISK_EVALUATIONS, _set("days_since_last_activity", -2), "days_since_last_activity", 3),  # InRange low
    (catalog.RISK_EVALUATIONS, _set("amount", float("nan")), "amount", 3),  # InRange: NaN is not a number here
    (catalog.RISK_EVALUATIONS, _set("stage", "won"), "stage", 3),  # OneOf
    (catalog.RISK_EVALUATIONS, _duplicate_first(2), "evaluation_date", 4),  # UniqueKey (2 rows, twice)
    (catalog.RISK_EVALUATIONS, _set("partition_date", date(1999, 1, 1)), "partition_date", 3),  # Check: month
    (catalog.ML_OUTCOMES, _set("outcome", "pending"), "outcome", 3),  # OneOf
    (catalog.ML_OUTCOMES, _flip_first(catalog.WIN_TARGET, 3), catalog.WIN_TARGET, 3),  # Check: agrees with outcome
    (catalog.ML_OUTCOMES, _duplicate_first(1), "opportunity_id", 2),  # UniqueKey
    (catalog.RISK_SNAPSHOTS, _set("risk_score", -0.1), "risk_score", 3),
    (catalog.RISK_SNAPSHOTS, _duplicate_first(3), "snapshot_date", 6),
    (catalog.REVENUE_DAILY, _set("revenue", -5.0), "revenue", 3),
    (catalog.REVENUE_DAILY, _duplicate_first(1), "date", 2),
]


@pytest.mark.parametrize("table, mutate, column, n_bad", TABLE_CASES)
def test_table_rule_rejects_and_writes_nothing(tables, tmp_path: Path, table, mutate, column, n_bad) -> None:
    lake = tmp_path / "lake"
    bad = mutate(tables[table])
    with pytest.raises(contracts.DataContractError) as error:
        synthetic.write_table(table, bad, str(lake), "part-0.parquet")
    _assert_rejected(error, str(lake / table), column, n_bad, lake)


def test_valid_tables_pass_and_are_written(tables, tmp_path: Path) -> None:
    """The counterpart: the same frames unmutated are accepted and land in their partitions."""
    for table in synthetic.SOURCE_TABLES:
        written = synthetic.write_table(table, tables[table], str(tmp_path), "part-0.parquet")
        assert written and all("tenant_id=" in w and "partition_date=" in w for w in written)


def _feature_as_list(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.concat_list("amount", "amount").alias("amount"))


def _close_on_evaluation_day(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.when(pl.int_range(pl.len()) < 2).then(pl.col("evaluation_date")).otherwise(pl.col("closed_date")).alias("closed_date"))


TRAINING_CASES = [
    # (model, mutation, column named, rows breaking it)
    ("win_probability", _set(catalog.WIN_TARGET, 2), catalog.WIN_TARGET, 3),  # OneOf
    ("win_probability", lambda df: df.drop(catalog.IS_CLOSED), catalog.IS_CLOSED, None),  # Column
    ("win_probability", _set("activity_count_30d", None), "activity_count_30d", 3),  # feature NotNull
    ("win_probability", _feature_as_list, "amount", None),  # feature dtype
    ("win_probability", _close_on_evaluation_day, "evaluation_date", 2),  # DateOrder: point in time
    ("win_probability", _duplicate_first(1), "opportunity_id", 2),  # UniqueKey
    ("win_probability", lambda df: df.head(0), "(rows)", 1),  # MinRows
    ("risk_scoring", _set(catalog.RISK_TARGET, 1.2), catalog.RISK_TARGET, 3),  # InRange
    ("risk_scoring", lambda df: df.drop(catalog.RISK_TARGET), catalog.RISK_TARGET, None),
    ("risk_trajectory", lambda df: df.with_columns(pl.col(catalog.TRAJECTORY_TIME).cast(pl.String)).pipe(_set(catalog.TRAJECTORY_TIME, "not-a-date", 2)), catalog.TRAJECTORY_TIME, 2),  # Parseable
    ("risk_trajectory", _duplicate_first(2), catalog.TRAJECTORY_TIME, 4),  # UniqueKey
    ("risk_trajectory", lambda df: df.drop(*catalog.TRAJECTORY_TARGETS), "target_risk_30", None),  # targets missing
    ("risk_trajectory", _set("target_risk_60", 1.5), "target_risk_60", 3),
    ("revenue_forecast", lambda df: df.rename({"revenue": "sales"}), "revenue", None),  # no accepted pair
    ("revenue_forecast", _duplicate_first(1), "date", 2),
    ("revenue_forecast", _set("revenue", float("inf"), 1), "revenue", 1),
    ("revenue_forecast", lambda df: df.head(1), "(rows)", 1),
    ("anomaly", _set(catalog.ANOMALY_LABEL, 3), catalog.ANOMALY_LABEL, 3),
    ("anomaly", lambda df: df.select("tenant_id", "opportunity_id", catalog.ANOMALY_LABEL), "(features)", None),
]


@pytest.mark.parametrize("model_id, mutate, column, n_bad", TRAINING_CASES)
def test_training_rule_rejects_and_writes_nothing(prepared, tmp_path: Path, model_id, mutate, column, n_bad) -> None:
    uri = str(tmp_path / "out" / "prepared.parquet")
    bad = mutate(prepared[model_id])
    with pytest.raises(contracts.DataContractError) as error:
        prepare.write_prepared(model_id, bad, uri)
    _assert_rejected(error, uri, column, n_bad, tmp_path / "out")


@pytest.mark.parametrize("model_id", sorted(catalog.MODELS))
def test_valid_prepared_frames_pass(prepared, model_id: str, tmp_path: Path) -> None:
    uri = str(tmp_path / "prepared.parquet")
    prepare.write_prepared(model_id, prepared[model_id], uri)
    assert pl.read_parquet(uri).equals(prepared[model_id])


def test_revenue_accepts_each_column_pair(prepared) -> None:
    frame = prepared["revenue_forecast"]
    contracts.validate_training_input("revenue_forecast", frame.rename({"date": "ds", "revenue": "y"}), "r.parquet")
    contracts.validate_training_input("revenue_forecast", frame.rename({"revenue": "pipeline_value"}), "r.parquet")
    as_text = frame.with_columns(pl.col("date").cast(pl.String))
    contracts.validate_training_input("revenue_forecast", as_text, "r.parquet")  # ISO strings parse


def test_features_argument_is_checked(prepared) -> None:
    frame = prepared["anomaly"]
    contracts.validate_training_input("anomaly", frame, "a.parquet", features=["amount", "risk_score"])
    with pytest.raises(contracts.DataContractError, match="'no_such_feature'"):
        contracts.validate_training_input("anomaly", frame, "a.parquet", features=["amount", "no_such_feature"])


def test_one_error_lists_the_other_broken_rules(prepared) -> None:
    bad = prepared["win_probability"].pipe(_set(catalog.WIN_TARGET, 7)).pipe(_set("probability", None, 2))
    with pytest.raises(contracts.DataContractError) as error:
        contracts.validate_training_input("win_probability", bad, "w.parquet")
    assert error.value.column == "probability"  # features are checked first
    assert any(catalog.WIN_TARGET in other for other in error.value.also_broken)
    assert "also broken" in str(error.value)


def test_lazy_scan_is_validated_like_a_frame(small_lake: Path) -> None:
    from salesrisk import storage

    uri = str(small_lake / catalog.RISK_EVALUATIONS)
    contracts.validate_table(catalog.RISK_EVALUATIONS, storage.scan_dataset(uri), uri)
    broken = storage.scan_dataset(uri).with_columns(probability=pl.col("probability") * 3)
    with pytest.raises(contracts.DataContractError, match="'probability'"):
        contracts.validate_table(catalog.RISK_EVALUATIONS, broken, uri)


def test_unknown_model_and_table_are_named() -> None:
    with pytest.raises(ValueError, match="no_such_model"):
        contracts.validate_training_input("no_such_model", pl.DataFrame({"a": [1]}), "x")
    with pytest.raises(ValueError, match="no_such_table"):
        contracts.validate_table("no_such_table", pl.DataFrame({"a": [1]}), "x")


def test_inference_log_contract_matches_the_serving_writer() -> None:
    from datetime import datetime, timezone

    logs = pl.DataFrame(
        {
            "request_id": ["r1", "r2"],
            "logged_at": [datetime(2025, 1, 1, tzinfo=timezone.utc)] * 2,
            "deployment": ["blue", "blue"],
            "model_name": ["win-probability-model"] * 2,
            "model_version": ["3", "3"],
            "rows": pl.Series([1, 4], dtype=pl.Int32),
            "inputs": ["[]", "[]"],
            "outputs": ["[]", "[]"],
        }
    )
    contracts.validate_table(catalog.ML_INFERENCE_LOGS, logs, "logs/")
    with pytest.raises(contracts.DataContractError) as error:
        contracts.validate_table(catalog.ML_INFERENCE_LOGS, pl.concat([logs, logs.head(1)]), "logs/")
    assert error.value.column == "request_id" and error.value.n_bad == 2 and "logs/" in str(error.value)
