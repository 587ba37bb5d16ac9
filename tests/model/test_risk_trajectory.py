"""The LSTM trajectory trainer: command line, saved model in a fresh process, masking, split, quality."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from models import risk_trajectory as rt
from salesrisk import catalog
from sequence_data import predict_in_fresh_process, run_trainer, snapshot_frame

pytestmark = pytest.mark.slow

FAST = ["--epochs", "3", "--hidden-size", "16"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trajectory-cwd")


@pytest.fixture(scope="module")
def snapshots_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trajectory-data") / "snapshots.parquet"
    snapshot_frame(120, seed=0).write_parquet(path)
    return path


@pytest.fixture(scope="module")
def trained_dir(snapshots_path: Path, workdir: Path) -> Path:
    output = workdir.parent / "trajectory-out"
    done = run_trainer("risk_trajectory", ["--training-data", snapshots_path, "--output", output, *FAST], workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def test_metrics_json_has_the_runbook_names_with_finite_values(trained_dir: Path) -> None:
    metrics = json.loads((trained_dir / "metrics.json").read_text())
    assert set(metrics) == set(catalog.MODELS["risk_trajectory"].metrics)
    assert all(math.isfinite(v) and v >= 0 for v in metrics.values()), metrics
    assert metrics["mae"] ** 2 <= metrics["loss"] + 1e-9  # MAE^2 <= MSE on the same errors


def test_saved_model_forecasts_each_opportunity_in_a_fresh_process(
    trained_dir: Path, snapshots_path: Path, workdir: Path
) -> None:
    frame = pl.read_parquet(snapshots_path)
    inputs = workdir / "predict-input.parquet"
    rt.holdout(frame).select(rt.ID, rt.TIME, *catalog.TRAJECTORY_FEATURES).write_parquet(inputs)
    answer = predict_in_fresh_process(trained_dir / "model", inputs, workdir)
    assert answer["columns"] == ["opportunityId", "risk_30", "risk_60", "risk_90"]
    records = answer["records"]
    assert sorted(r["opportunityId"] for r in records) == sorted(rt.holdout_ids(frame).to_list())
    assert all(0 <= r[name] <= 1 for r in records for name in rt.OUTPUTS)


def test_nothing_lands_in_the_working_directory(trained_dir: Path, workdir: Path) -> None:
    assert not (workdir / "lightning_logs").exists()
    assert not (trained_dir / "lightning_logs").exists()


def test_missing_feature_column_exits_2_naming_file_and_column(
    snapshots_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "no-activity.parquet"
    pl.read_parquet(snapshots_path).drop("days_since_last_activity").write_parquet(bad)
    output = tmp_path / "out"
    assert rt.main(["--training-data", str(bad), "--output", str(output), *FAST]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "days_since_last_activity" in err
    assert not (output / "model").exists()


def test_no_target_column_exits_2_naming_the_targets(
    snapshots_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "no-targets.parquet"
    pl.read_parquet(snapshots_path).drop(list(rt.TARGETS)).write_parquet(bad)
    assert rt.main(["--training-data", str(bad), "--output", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "target_risk" in err


def test_padding_never_reaches_the_forecast() -> None:
    torch.manual_seed(0)
    net = rt.TrajectoryNet(3, 8).eval()
    history = torch.randn(2, 5, 3)
    padded = torch.cat([history, torch.full((2, 25, 3), 1e6)], dim=1)  # garbage after the real steps
    lengths = torch.tensor([5, 2])
    with torch.no_grad():
        short = net(history[:, :5], lengths)
        long = net(padded, lengths)
        alone = net(history[1:, :2], torch.tensor([2]))
    torch.testing.assert_close(short, long)
    torch.testing.assert_close(long[1:], alone)


def test_windows_keep_the_latest_snapshots_and_pad_short_histories() -> None:
    frame = rt.ordered(snapshot_frame(3, seed=1, min_snapshots=4, max_snapshots=4))
    ends = np.array([0, 3, 5])
    found = rt.windows(frame, ["risk_score"], ends, length=3)
    values = frame.get_column("risk_score").to_numpy()
    assert found.lengths.tolist() == [1, 3, 2]
    np.testing.assert_allclose(found.x[0, :, 0], [values[0], 0, 0], rtol=1e-6)
    np.testing.assert_allclose(found.x[1, :, 0], values[1:4], rtol=1e-6)
    np.testing.assert_allclose(found.x[2, :, 0], [values[4], values[5], 0], rtol=1e-6)


def test_horizons_are_derived_from_a_single_target_risk() -> None:
    frame = rt.ordered(snapshot_frame(5, seed=2, single_target=True))
    derived = rt.with_horizon_targets(frame)
    for opp in derived.partition_by(rt.ID):
        dates = opp.get_column(rt.TIME).to_list()
        risk = opp.get_column(catalog.RISK_TARGET).to_list()
        for i, date in enumerate(dates):
            later = [j for j, d in enumerate(dates) if 0 <= (d - date).days - 30 <= rt.HORIZON_TOLERANCE_DAYS]
            expected = risk[later[0]] if later else None
            assert opp.get_column("target_risk_30")[i] == expected


def test_holdout_is_whole_unseen_opportunities_and_repeatable() -> None:
    frame = snapshot_frame(50, seed=3)
    train, valid = rt.split(frame, seed=7)
    assert set(train.get_column(rt.ID)).isdisjoint(valid.get_column(rt.ID))
    assert train.height + valid.height == frame.height
    assert valid.get_column(rt.ID).n_unique() == 10
    assert rt.holdout(frame, seed=7).equals(rt.holdout(frame, seed=7))
    assert set(rt.holdout(frame, seed=7).get_column(rt.ID)) == set(valid.get_column(rt.ID))
    times = rt.holdout(frame, seed=7).get_column(rt.TIME)
    assert times.is_sorted()


class _Persistence:
    """Forecasts every horizon as the latest risk_score: the baseline to beat."""

    def predict(self, frame):  # noqa: ANN001, ANN201 (pandas in, pandas out, like a pyfunc)
        latest = pl.from_pandas(frame).sort(rt.TIME).group_by(rt.ID).agg(pl.col("risk_score").last())
        return latest.select(rt.ID, *[pl.col("risk_score").alias(o) for o in rt.OUTPUTS]).to_pandas()


class _Net:
    def __init__(self, trained: rt.TrainedTrajectory) -> None:
        self.trained = trained

    def predict(self, frame):  # noqa: ANN001, ANN201
        return rt.forecast(self.trained.net, self.trained.features, self.trained.sequence_length, frame)


def test_trained_network_beats_persistence_on_unseen_opportunities() -> None:
    frame = rt.with_horizon_targets(rt.ordered(snapshot_frame(120, seed=4)))
    train, valid = rt.split(frame)
    trained = rt.train(train, valid, catalog.TRAJECTORY_FEATURES, rt.TrajectoryParams(epochs=20))
    model = rt.evaluate(_Net(trained), valid)
    baseline = rt.evaluate(_Persistence(), valid)
    assert set(model) == {"loss", "mae"}
    assert model["mae"] < 0.8 * baseline["mae"], (model, baseline)


def test_training_is_repeatable() -> None:
    frame = rt.with_horizon_targets(rt.ordered(snapshot_frame(30, seed=5)))
    train, valid = rt.split(frame)
    params = rt.TrajectoryParams(epochs=2, hidden_size=8)
    first = rt.train(train, valid, catalog.TRAJECTORY_FEATURES, params)
    assert rt.train(train, valid, catalog.TRAJECTORY_FEATURES, params).metrics == first.metrics
