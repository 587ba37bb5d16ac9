"""A fair gate: candidate and champion are scored only on rows neither of them trained on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from models import splits
from salesrisk import catalog


def snapshots(opportunities: range, days: int = 20) -> pl.DataFrame:
    rows = [
        {catalog.TRAJECTORY_ID: f"o{o}", catalog.TRAJECTORY_TIME: dt.date(2024, 1, 1) + dt.timedelta(days=d), "risk_score": 0.5}
        for o in opportunities
        for d in range(days)
    ]
    return pl.DataFrame(rows)


def evaluations(start: dt.date, n: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "opportunity_id": [f"o{i}" for i in range(n)],
            "evaluation_date": [start + dt.timedelta(days=i) for i in range(n)],
            catalog.RISK_TARGET: rng.uniform(0, 1, n),
        }
    )


def test_a_group_the_champion_trained_on_is_never_scored() -> None:
    seen = snapshots(range(0, 60))
    rows = snapshots(range(40, 100))
    fair = splits.unseen(rows, seen, group=catalog.TRAJECTORY_ID)
    assert set(fair.get_column(catalog.TRAJECTORY_ID)) == {f"o{i}" for i in range(60, 100)}


def test_time_ordered_rows_must_be_later_than_the_champions_training() -> None:
    seen = evaluations(dt.date(2024, 1, 1), 100)
    rows = evaluations(dt.date(2024, 3, 1), 100)
    fair = splits.unseen(rows, seen)
    assert fair.get_column("evaluation_date").min() > seen.get_column("evaluation_date").max()
    assert fair.height == rows.filter(pl.col("evaluation_date") > dt.date(2024, 4, 9)).height


def test_without_time_or_group_identical_rows_are_dropped() -> None:
    seen = pl.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1, 2, 3]})
    rows = pl.DataFrame({"x": [2.0, 3.0, 4.0], "y": [2, 9, 4], "__row": [0, 1, 2]})
    assert splits.unseen(rows, seen).get_column("__row").to_list() == [1, 2]


@pytest.fixture()
def registry_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SALESRISK_HOME", str(tmp_path / "home"))
    return tmp_path


def champion_version(name: str, training_data: str, seed: int) -> str:
    from salesrisk import registry

    client = registry.client()
    client.create_registered_model(name)
    version = client.create_model_version(name, source=str(Path(training_data).parent)).version
    client.set_model_version_tag(name, version, "training_data", training_data)
    client.set_model_version_tag(name, version, "param.seed", str(seed))
    return str(version)


def test_trajectory_gate_rows_exclude_every_opportunity_the_champion_trained_on(registry_env: Path) -> None:
    from tasks.evaluate import fair_rows, held_out_rows
    from tasks.refs import DataRef, TrainedModel

    old, new = registry_env / "old.parquet", registry_env / "new.parquet"
    snapshots(range(0, 80)).write_parquet(old)
    snapshots(range(0, 120)).write_parquet(new)  # 40 new opportunities; the ids are re-split
    name = catalog.registered_name("risk_trajectory")
    version = champion_version(name, str(old), seed=1)
    trained = TrainedModel("risk_trajectory", name, str(registry_env), {}, None, DataRef(str(new), "x"), {"seed": 42})

    held = held_out_rows(trained)
    rows, reason = fair_rows(trained, version)
    from models import risk_trajectory

    champion_trained = set(risk_trajectory.split(pl.read_parquet(old), seed=1)[0].get_column(catalog.TRAJECTORY_ID))
    scored = set(rows.get_column(catalog.TRAJECTORY_ID))
    assert champion_trained & set(held.get_column(catalog.TRAJECTORY_ID)), "the unfair rows exist: the test can fail"
    assert scored and not scored & champion_trained
    assert scored <= set(held.get_column(catalog.TRAJECTORY_ID))
    assert "never trained on" in reason


def test_unknown_champion_data_says_so(registry_env: Path) -> None:
    from tasks.evaluate import fair_rows
    from tasks.refs import DataRef, TrainedModel

    new = registry_env / "new.parquet"
    evaluations(dt.date(2024, 1, 1), 200).write_parquet(new)
    name = catalog.registered_name("risk_scoring")
    version = champion_version(name, str(registry_env / "gone.parquet"), seed=42)
    trained = TrainedModel("risk_scoring", name, str(registry_env), {}, None, DataRef(str(new), "x"), {"seed": 42})
    rows, reason = fair_rows(trained, version)
    assert rows.height == 40 and "not known" in reason
