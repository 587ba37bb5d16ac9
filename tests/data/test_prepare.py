"""Preparation: point-in-time joins, as-of reads, top-up below the runbook's thresholds, and
partition pruning (a filtered read never opens a file of another partition)."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from models import contracts, prepare
from salesrisk import catalog, storage
from tests.data.conftest import files_under, sources

AS_OF = date(2024, 9, 15)


def _read(path: str | Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def _table(lake: Path, name: str) -> pl.DataFrame:
    return storage.scan_dataset(str(lake / name)).collect()


def _run(lake: Path, out: Path, model_id: str, **kwargs) -> tuple[prepare.PrepareResult, pl.DataFrame]:
    result = prepare.prepare(model_id, **sources(lake), output=str(out), **kwargs)
    return result, _read(result.output_uri)


def _reference_rows(lake: Path, as_of: date | None = None) -> pl.DataFrame:
    """Brute force, one opportunity at a time: the latest evaluation strictly before the close."""
    evaluations = _table(lake, catalog.RISK_EVALUATIONS)
    outcomes = _table(lake, catalog.ML_OUTCOMES)
    if as_of:
        evaluations = evaluations.filter(pl.col("evaluation_date") <= as_of)
        outcomes = outcomes.filter(pl.col("closed_date") <= as_of)
    by_opportunity = evaluations.partition_by("tenant_id", "opportunity_id", as_dict=True)
    picked = []
    for outcome in outcomes.iter_rows(named=True):
        history = by_opportunity.get((outcome["tenant_id"], outcome["opportunity_id"]))
        if history is None:
            continue
        before = history.filter(pl.col("evaluation_date") < outcome["closed_date"])
        if before.height:
            picked.append(before.sort("evaluation_date").tail(1).with_columns(target_win=pl.lit(outcome["target_win"])))
    return pl.concat(picked)


@pytest.mark.parametrize("model_id", ["win_probability", "risk_scoring"])
def test_point_in_time_no_feature_from_the_outcome_day_or_later(small_lake: Path, tmp_path: Path, model_id: str) -> None:
    result, rows = _run(small_lake, tmp_path, model_id, top_up=False)
    assert rows.height == result.rows == result.source_rows > 300
    assert (rows["evaluation_date"] < rows["closed_date"]).all()
    # the lake holds a close-day evaluation with the final stage and probability 1/0 for every
    # closed deal: a join that is not point-in-time would pick it up
    evaluations = _table(small_lake, catalog.RISK_EVALUATIONS)
    assert evaluations.filter(pl.col("stage_encoded") >= 5).height >= rows.height
    assert rows["stage_encoded"].max() <= 4
    reference = _reference_rows(small_lake)
    columns = ["tenant_id", "opportunity_id", "evaluation_date", *catalog.OPPORTUNITY_FEATURES]
    assert rows.select(columns).sort("opportunity_id").equals(reference.select(columns).sort("opportunity_id"))
    if model_id == "risk_scoring":
        expected = reference.sort("opportunity_id")["target_win"].cast(pl.Float64)
        assert (rows.sort("opportunity_id")[catalog.RISK_TARGET] == 1.0 - expected).all()
    else:
        assert (rows[catalog.IS_CLOSED] == 1).all()
        assert rows.sort("opportunity_id")[catalog.WIN_TARGET].equals(
            reference.sort("opportunity_id")["target_win"].cast(pl.Int32), check_names=False
        )


def _damage_after(lake: Path, as_of: date) -> int:
    """Overwrite every file of every partition later than ``as_of`` with garbage."""
    damaged = 0
    for path in files_under(lake):
        values = storage.partition_values(str(path.relative_to(lake)))
        if "partition_date" in values and date.fromisoformat(values["partition_date"]) > as_of:
            path.write_bytes(b"not parquet")
            damaged += 1
    return damaged


@pytest.mark.parametrize("model_id", sorted(catalog.MODELS))
def test_as_of_reads_only_what_was_known_then(small_lake: Path, lake_copy: Path, tmp_path: Path, model_id: str) -> None:
    _, clean = _run(small_lake, tmp_path / "clean", model_id, partition_date=AS_OF, top_up=False)
    assert _damage_after(lake_copy, AS_OF) > 0
    _, from_damaged = _run(lake_copy, tmp_path / "damaged", model_id, partition_date=AS_OF, top_up=False)
    assert clean.equals(from_damaged)  # nothing after the as-of date was opened, let alone used
    for column in ("evaluation_date", "closed_date", catalog.TRAJECTORY_TIME, "date"):
        if column in clean.columns:
            assert clean[column].max() <= AS_OF
    if model_id == "win_probability":
        assert clean.select(columns := ["opportunity_id", "evaluation_date"]).sort(columns).equals(
            _reference_rows(small_lake, AS_OF).select(columns).sort(columns)
        )


def test_unfiltered_read_does_open_damaged_partitions(lake_copy: Path, tmp_path: Path) -> None:
    """The counterpart of the pruning tests: without a filter the damage is found and named."""
    _damage_after(lake_copy, AS_OF)
    with pytest.raises(storage.StorageError, match=r"partition_date=[-\d]+/part-\d+\.parquet: cannot read"):
        _run(lake_copy, tmp_path / "out", "win_probability", top_up=False)
    assert files_under(tmp_path / "out") == []


def test_tenant_filter_opens_only_that_tenant(small_lake: Path, lake_copy: Path, tmp_path: Path) -> None:
    for path in files_under(lake_copy):
        if "tenant_id=tenant-02" in str(path):
            path.write_bytes(b"not parquet")
    for model_id in catalog.MODELS:
        _, clean = _run(small_lake, tmp_path / "clean" / model_id, model_id, tenant_id="tenant-01", top_up=False)
        _, pruned = _run(lake_copy, tmp_path / "pruned" / model_id, model_id, tenant_id="tenant-01", top_up=False)
        assert clean.equals(pruned)
        if "tenant_id" in clean.columns:
            assert set(clean["tenant_id"]) == {"tenant-01"}


def test_listing_prunes_by_folder_name(small_lake: Path) -> None:
    uri = str(small_lake / catalog.RISK_EVALUATIONS)
    everything = storage.list_dataset(uri)
    chosen = prepare.Scope("tenant-01", AS_OF).partitions()
    kept = storage.list_dataset(uri, chosen)
    assert 0 < len(kept) < len(everything)
    for file in kept:
        values = storage.partition_values(str(Path(file).relative_to(small_lake)))
        assert values["tenant_id"] == "tenant-01" and date.fromisoformat(values["partition_date"]) <= AS_OF


def test_unknown_tenant_is_one_clear_error(small_lake: Path, tmp_path: Path) -> None:
    with pytest.raises(storage.StorageError, match="risk_evaluations.*tenant_id"):
        _run(small_lake, tmp_path, "win_probability", tenant_id="tenant-99")
    assert files_under(tmp_path) == []


def test_bad_source_value_names_the_source_and_writes_nothing(lake_copy: Path, tmp_path: Path) -> None:
    evaluations = lake_copy / catalog.RISK_EVALUATIONS
    victim = files_under(evaluations)[0]
    frame = pl.read_parquet(victim).with_columns(probability=pl.col("probability") + 5)
    frame.write_parquet(victim)
    with pytest.raises(contracts.DataContractError) as error:
        _run(lake_copy, tmp_path / "out", "win_probability", top_up=False)
    assert str(evaluations) in str(error.value) and error.value.column == "probability"
    assert files_under(tmp_path / "out") == []


def test_missing_source_column_names_the_source(lake_copy: Path, tmp_path: Path) -> None:
    for path in files_under(lake_copy / catalog.ML_OUTCOMES):
        pl.read_parquet(path).drop(catalog.WIN_TARGET).write_parquet(path)
    with pytest.raises(contracts.DataContractError) as error:
        _run(lake_copy, tmp_path / "out", "risk_scoring", top_up=False)
    assert str(lake_copy / catalog.ML_OUTCOMES) in str(error.value) and error.value.column == catalog.WIN_TARGET
    assert files_under(tmp_path / "out") == []


@pytest.mark.parametrize("model_id", ["win_probability", "risk_scoring"])
def test_top_up_below_threshold(small_lake: Path, tmp_path: Path, model_id: str, caplog: pytest.LogCaptureFixture) -> None:
    minimum = catalog.MODELS[model_id].min_rows
    _, real = _run(small_lake, tmp_path / "real", model_id, top_up=False)
    assert real.height < minimum
    with caplog.at_level(logging.INFO, logger="salesrisk.prepare"):
        result, rows = _run(small_lake, tmp_path / "topped", model_id, seed=5)
    added = minimum - real.height
    assert (result.rows, result.synthetic_rows, result.source_rows) == (minimum, added, real.height)
    assert rows.height == minimum and rows[catalog.IS_SYNTHETIC].sum() == added
    assert f"added {added} synthetic rows" in caplog.text
    synthetic = rows.filter(pl.col(catalog.IS_SYNTHETIC) == 1)
    assert (synthetic["tenant_id"] == prepare.SYNTHETIC_TENANT).all()
    assert (synthetic["evaluation_date"] < synthetic["closed_date"]).all()
    # real rows are untouched and come first
    assert rows.filter(pl.col(catalog.IS_SYNTHETIC) == 0).drop(catalog.IS_SYNTHETIC).equals(real)
    # same seed, same rows; a different seed, different synthetic rows
    _, again = _run(small_lake, tmp_path / "again", model_id, seed=5)
    _, other = _run(small_lake, tmp_path / "other", model_id, seed=6)
    assert again.equals(rows) and not other.equals(rows)


def test_no_top_up_at_or_above_threshold(small_lake: Path, tmp_path: Path) -> None:
    """risk_trajectory, revenue_forecast and anomaly have no minimum: never topped up."""
    for model_id in ("risk_trajectory", "revenue_forecast", "anomaly"):
        result, rows = _run(small_lake, tmp_path / model_id, model_id)
        assert result.synthetic_rows == 0 and catalog.IS_SYNTHETIC not in rows.columns


def test_trajectory_targets_are_the_risk_observed_later(small_lake: Path, tmp_path: Path) -> None:
    _, rows = _run(small_lake, tmp_path, "risk_trajectory", partition_date=AS_OF)
    snapshots = _table(small_lake, catalog.RISK_SNAPSHOTS).filter(pl.col("snapshot_date") <= AS_OF)
    outcomes = _table(small_lake, catalog.ML_OUTCOMES).filter(pl.col("closed_date") <= AS_OF)
    assert rows.height == snapshots.height
    observed = {(r["opportunity_id"], r["snapshot_date"]): r["risk_score"] for r in snapshots.iter_rows(named=True)}
    closed = {r["opportunity_id"]: (r["closed_date"], 1.0 - r["target_win"]) for r in outcomes.iter_rows(named=True)}
    checked = {"observed": 0, "settled": 0, "unknown": 0}
    for row in rows.sample(3000, seed=1).iter_rows(named=True):
        for horizon, target in zip(catalog.TRAJECTORY_HORIZONS, catalog.TRAJECTORY_TARGETS):
            day = row[catalog.TRAJECTORY_TIME] + timedelta(days=horizon)
            key = (row[catalog.TRAJECTORY_ID], day)
            if key in observed:
                assert row[target] == observed[key]
                checked["observed"] += 1
            elif row[catalog.TRAJECTORY_ID] in closed and closed[row[catalog.TRAJECTORY_ID]][0] <= day:
                assert row[target] == closed[row[catalog.TRAJECTORY_ID]][1]
                checked["settled"] += 1
            else:
                assert row[target] is None
                checked["unknown"] += 1
    assert min(checked.values()) > 0, checked
    ordered = rows.select(catalog.TRAJECTORY_ID, catalog.TRAJECTORY_TIME)
    assert ordered.equals(ordered.sort(catalog.TRAJECTORY_ID, catalog.TRAJECTORY_TIME))


def test_revenue_sums_tenants_or_takes_one(small_lake: Path, tmp_path: Path) -> None:
    revenue = _table(small_lake, catalog.REVENUE_DAILY)
    _, total = _run(small_lake, tmp_path / "all", "revenue_forecast")
    _, one = _run(small_lake, tmp_path / "one", "revenue_forecast", tenant_id="tenant-02")
    assert total.columns == ["date", "revenue"] and total["date"].is_unique().all()
    assert total.height == revenue["date"].n_unique() == 366
    assert total["revenue"].sum() == pytest.approx(revenue["revenue"].sum())
    mine = revenue.filter(pl.col("tenant_id") == "tenant-02").sort("date")
    assert one["revenue"].to_list() == pytest.approx(mine["revenue"].to_list())


def test_anomaly_rows_are_open_evaluations_with_labels(small_lake: Path, tmp_path: Path) -> None:
    _, rows = _run(small_lake, tmp_path, "anomaly")
    evaluations = _table(small_lake, catalog.RISK_EVALUATIONS)
    assert rows.height == evaluations.filter(pl.col("stage_encoded") < 5).height
    assert 0.015 < rows[catalog.ANOMALY_LABEL].mean() < 0.05


def test_sibling_tables_default_next_to_risk_evaluations(small_lake: Path) -> None:
    uri = str(small_lake / catalog.RISK_EVALUATIONS)
    assert prepare.sibling(uri, catalog.RISK_SNAPSHOTS) == str(small_lake / catalog.RISK_SNAPSHOTS)
    assert prepare.sibling(uri + "/", catalog.REVENUE_DAILY) == str(small_lake / catalog.REVENUE_DAILY)
    remote = "abfs://lake@acct.dfs.core.windows.net/root/risk_evaluations"
    assert prepare.sibling(remote, catalog.RISK_SNAPSHOTS) == "abfs://lake@acct.dfs.core.windows.net/root/risk_snapshots"


def test_prepared_file_is_a_trainer_input(small_lake: Path, tmp_path: Path) -> None:
    """What a trainer does first: read the file and check it with its features."""
    result, _ = _run(small_lake, tmp_path, "win_probability")
    frame = storage.read_parquet(result.output_uri)
    contracts.validate_training_input("win_probability", frame, result.output_uri, features=list(catalog.WIN_PROBABILITY_FEATURES))
    assert [p.name for p in files_under(tmp_path)] == [prepare.PREPARED_FILE]


def test_only_folders_below_the_table_are_partitions(small_lake: Path, tmp_path: Path) -> None:
    """A '=' higher up the path is not a partition (polars' own hive parsing would take it)."""
    import shutil

    odd = tmp_path / "amount=1" / "lake"
    shutil.copytree(small_lake / catalog.ML_OUTCOMES, odd / catalog.ML_OUTCOMES)
    frame = storage.scan_dataset(str(odd / catalog.ML_OUTCOMES)).collect()
    assert "amount" not in frame.columns and frame.schema["partition_date"] == pl.Date
    assert frame.sort(pl.all()).equals(_table(small_lake, catalog.ML_OUTCOMES).sort(pl.all()))
