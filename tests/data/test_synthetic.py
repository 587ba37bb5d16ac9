"""The generator: same seed same bytes, appended days equal a longer run, the layout, and a
generative model with real signal, no leakage and the documented shapes."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from models import contracts, prepare, synthetic
from salesrisk import catalog, storage
from tests.data.conftest import LAKE_ARGS, files_under

TINY = dict(n_opportunities=240, tenants=2, start=date(2024, 1, 1), end=date(2024, 4, 29), seed=11)  # 120 days


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in files_under(root)}


def _all(root: Path, table: str) -> pl.DataFrame:
    frame = storage.scan_dataset(str(root / table)).collect()
    return frame.select(sorted(frame.columns)).sort(pl.all())


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = synthetic.generate(str(tmp_path / "a"), **TINY)
    second = synthetic.generate(str(tmp_path / "b"), **TINY)
    third = synthetic.generate(str(tmp_path / "c"), **{**TINY, "seed": 12})
    a, b, c = _bytes(tmp_path / "a"), _bytes(tmp_path / "b"), _bytes(tmp_path / "c")
    assert first == second and a == b and len(a) > 20
    assert a.keys() == c.keys() and a != c
    assert first[catalog.RISK_EVALUATIONS] == sum(
        pl.read_parquet(tmp_path / "a" / name).height for name in a if name.startswith(catalog.RISK_EVALUATIONS)
    )


def test_layout_is_hive_partitioned_by_tenant_and_month(small_lake: Path) -> None:
    for table in synthetic.SOURCE_TABLES:
        files = files_under(small_lake / table)
        assert 20 <= len(files) <= 2 * 12  # two tenants x twelve months at most, one file each
        for path in files:
            values = storage.partition_values(str(path.relative_to(small_lake / table)))
            assert list(values) == ["tenant_id", "partition_date"]
            assert date.fromisoformat(values["partition_date"]).day == 1
            assert "tenant_id" not in pl.read_parquet_schema(path)  # the folder carries it
    manifest = json.loads((small_lake / catalog.TRUTH / synthetic.MANIFEST).read_text())
    assert manifest["seed"] == LAKE_ARGS["seed"] and manifest["end"] == "2024-12-31"


def test_every_table_meets_its_contract(small_lake: Path) -> None:
    for table in synthetic.SOURCE_TABLES:
        uri = str(small_lake / table)
        contracts.validate_table(table, storage.scan_dataset(uri), uri)


def test_append_days_equals_one_longer_run(tmp_path: Path) -> None:
    extra = 45
    short, longer = tmp_path / "short", tmp_path / "long"
    synthetic.generate(str(short), **TINY)
    before = _bytes(short)
    added = synthetic.append_days(str(short), extra, seed=TINY["seed"])
    end = TINY["end"] + timedelta(days=extra)
    # the same daily rate of new opportunities over the longer range
    synthetic.generate(str(longer), **{**TINY, "end": end, "n_opportunities": TINY["n_opportunities"] * (120 + extra) // 120})
    for table in (*synthetic.SOURCE_TABLES, f"{catalog.TRUTH}/opportunities", f"{catalog.TRUTH}/risk_evaluations"):
        assert _all(short, table).equals(_all(longer, table)), table
        assert added[table] > 0
    after = _bytes(short)
    assert all(after[name] == data for name, data in before.items() if not name.endswith(".json"))  # appends, never rewrites
    assert synthetic.read_spec(str(short)).end == end


def test_append_days_twice_continues(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    synthetic.generate(str(lake), **TINY)
    synthetic.append_days(str(lake), 3, seed=TINY["seed"])
    synthetic.append_days(str(lake), 4, seed=TINY["seed"])
    revenue = _all(lake, catalog.REVENUE_DAILY)
    assert revenue["date"].max() == TINY["end"] + timedelta(days=7)
    assert revenue.select("tenant_id", "date").is_unique().all()


def test_refuses_to_overwrite_data_it_did_not_write(tmp_path: Path) -> None:
    foreign = tmp_path / "lake" / catalog.RISK_EVALUATIONS / "x.parquet"
    foreign.parent.mkdir(parents=True)
    pl.DataFrame({"a": [1]}).write_parquet(foreign)
    with pytest.raises(storage.StorageError, match="did not write"):
        synthetic.generate(str(tmp_path / "lake"), **TINY)
    assert foreign.exists()


def test_regenerating_a_generated_lake_replaces_it(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    synthetic.generate(str(lake), **{**TINY, "end": date(2024, 6, 30)})
    synthetic.generate(str(lake), **TINY)
    assert _all(lake, catalog.REVENUE_DAILY)["date"].max() == TINY["end"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(start=date(2024, 2, 1), end=date(2024, 1, 1)), "after end"),
        (dict(pct_closed=1.5), "pct_closed"),
        (dict(tenants=0), "tenants"),
        (dict(tables=["nope"]), "unknown tables"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic.generate(str(tmp_path / "lake"), **{**TINY, **kwargs})
    assert files_under(tmp_path) == []


@pytest.fixture(scope="module")
def default_tables() -> dict[str, pl.DataFrame]:
    """The default lake, in memory: what `make run` trains on."""
    spec = synthetic.make_spec()
    return synthetic.build_tables(spec, spec.start, spec.end)


def test_default_lake_clears_every_threshold(default_tables) -> None:
    rows = prepare.opportunity_frame(
        "win_probability",
        default_tables[catalog.RISK_EVALUATIONS].lazy(),
        default_tables[catalog.ML_OUTCOMES].lazy(),
    ).collect()
    assert rows.height >= catalog.MODELS["win_probability"].min_rows >= catalog.MODELS["risk_scoring"].min_rows
    revenue = default_tables[catalog.REVENUE_DAILY]
    assert revenue["date"].n_unique() >= 730  # two years: weekly and yearly seasonality
    closed_share = default_tables[catalog.ML_OUTCOMES].height / 8000
    assert 0.6 < closed_share <= 0.7


def test_generative_model_has_signal_and_no_leak(default_tables) -> None:
    truth = default_tables[f"{catalog.TRUTH}/opportunities"]
    outcomes = default_tables[catalog.ML_OUTCOMES].join(truth.select("opportunity_id", "true_win_probability"), on="opportunity_id")
    # outcome ~ Bernoulli(true p): the truth separates wins well, and is calibrated
    assert roc_auc_score(outcomes[catalog.WIN_TARGET], outcomes["true_win_probability"]) > 0.75
    assert outcomes[catalog.WIN_TARGET].mean() == pytest.approx(outcomes["true_win_probability"].mean(), abs=0.03)
    rows = prepare.opportunity_frame(
        "win_probability", default_tables[catalog.RISK_EVALUATIONS].lazy(), default_tables[catalog.ML_OUTCOMES].lazy()
    ).collect()
    y = rows[catalog.WIN_TARGET].to_numpy()
    # features carry signal (activity is driven by the latent quality) ...
    assert roc_auc_score(y, rows["activity_count_30d"].to_numpy()) > 0.65
    # ... but no single feature gives the outcome away, as a post-outcome field would
    for feature in catalog.OPPORTUNITY_FEATURES:
        assert 0.2 < roc_auc_score(y, rows[feature].to_numpy()) < 0.8, feature


def test_industries_differ_in_what_drives_a_win(default_tables) -> None:
    """Each industry's own price sensitivity: the slope of the true win logit on log(amount), with
    quality held fixed, is the common -0.3 plus the industry's documented coefficient, so an
    industry effect is an interaction with a feature, not only a shift the global model learns."""
    truth = default_tables[f"{catalog.TRUTH}/opportunities"]
    slopes = {}
    for industry, coefficients in synthetic.INDUSTRY_DRIVERS.items():
        rows = truth.filter(pl.col("industry_id") == industry)
        p = rows["true_win_probability"].to_numpy().clip(1e-6, 1 - 1e-6)
        x = np.column_stack([np.ones(rows.height), rows["quality"].to_numpy(), np.log(rows["amount"].to_numpy())])
        slopes[industry] = np.linalg.lstsq(x, np.log(p / (1 - p)), rcond=None)[0][2]
        assert slopes[industry] == pytest.approx(-0.3 + coefficients[0] / 0.8, abs=0.1), industry
    assert slopes["retail"] < slopes["healthcare"] - 0.4  # price-sensitive buyers against committee buyers
    assert len({round(float(s), 1) for s in slopes.values()}) >= 3


def test_anomalies_are_injected_and_labelled(default_tables) -> None:
    evaluations = default_tables[catalog.RISK_EVALUATIONS]
    share = evaluations[catalog.ANOMALY_LABEL].mean()
    assert 0.02 <= share <= 0.05
    flagged = evaluations.filter(pl.col(catalog.ANOMALY_LABEL) == 1)
    normal = evaluations.filter(pl.col(catalog.ANOMALY_LABEL) == 0)
    assert flagged["activity_count_30d"].quantile(0.9) > normal["activity_count_30d"].quantile(0.99)


def test_revenue_has_weekly_yearly_and_quarter_end_shape(default_tables) -> None:
    revenue = default_tables[catalog.REVENUE_DAILY].group_by("date").agg(pl.col("revenue").sum()).sort("date")
    days = revenue.with_columns(
        weekend=pl.col("date").dt.weekday() >= 6,
        quarter_end=(pl.col("date").dt.month() % 3 == 0) & (pl.col("date").dt.day() >= pl.col("date").dt.month_end().dt.day() - 2),
        year=pl.col("date").dt.year(),
    )
    weekday = days.filter(~pl.col("weekend"))["revenue"].mean()
    assert days.filter(pl.col("weekend"))["revenue"].mean() < 0.5 * weekday
    assert days.filter(pl.col("quarter_end") & ~pl.col("weekend"))["revenue"].mean() > 1.5 * weekday
    by_year = days.group_by("year").agg(pl.col("revenue").sum()).sort("year")["revenue"].to_numpy()
    assert by_year[1] > by_year[0]  # trend
    monthly = days.group_by(pl.col("date").dt.month()).agg(pl.col("revenue").mean()).sort("date")["revenue"].to_numpy()
    assert monthly.max() / monthly.min() > 1.2  # yearly season


def test_risk_path_trends_towards_the_truth(default_tables) -> None:
    """Early scores sit near 0.5; the last open evaluation tracks 1 - true p (trajectory signal)."""
    truth = default_tables[f"{catalog.TRUTH}/risk_evaluations"]
    evaluations = default_tables[catalog.RISK_EVALUATIONS].join(truth, on=["tenant_id", "opportunity_id", "evaluation_date"])
    first = evaluations.sort("evaluation_date").group_by("opportunity_id").first()
    assert abs(first["true_risk"].mean() - 0.5) < 0.02
    last = prepare.last_before_close(
        evaluations.lazy().select(*prepare.EVALUATION_COLUMNS, "risk_score"),
        default_tables[catalog.ML_OUTCOMES].lazy().select(prepare.OUTCOME_COLUMNS),
    ).collect()
    both = last.join(default_tables[f"{catalog.TRUTH}/opportunities"], on="opportunity_id")
    assert both.height == last.height
    assert np.corrcoef(both["risk_score"].to_numpy(), 1 - both["true_win_probability"].to_numpy())[0, 1] > 0.6
