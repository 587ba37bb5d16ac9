"""Risk trajectory: a torch LSTM over each opportunity's snapshots, forecasting risk at +30/60/90 days.

``python -m models.risk_trajectory --training-data URI --output DIR [--sequence-length 30]
[--epochs N] [--hidden-size N] [--batch-size N] [--learning-rate X] [--patience N]
[--max-windows N]``

One training example is the history of one opportunity up to one snapshot (at most
``--sequence-length`` snapshots; shorter histories are right-padded and the forecast is read at
the last real step, so padding never reaches it) and the risk observed 30, 60 and 90 days later. Targets come from ``target_risk_30/60/90``;
with a single ``target_risk`` (the risk measured at each snapshot) the horizons are read off the
same opportunity's later snapshots (the first one at or after +h days, at most 7 days late).
Null targets are risks not observed yet: those snapshots still feed the history, they are just not
trained on.

Opportunities, not rows, are split (20% held out, seeded), so validation measures the model on
opportunities it never saw; the held-out part drives early stopping and is what :func:`holdout`
returns to the champion/challenger gate. Feature and target scaling live inside the network as
buffers, so the saved model takes raw snapshot rows. ``loss`` and ``val_loss`` are the mean
squared error and ``mae`` and ``val_mae`` the mean absolute error, in risk units over every
observed horizon, of the saved weights (the best epoch, which early stopping restores) on the
training and validation windows.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import torch
from torch import nn

from models import pyfunc_support, trainer
from salesrisk import catalog

log = logging.getLogger("salesrisk.risk_trajectory")

MODEL_ID = "risk_trajectory"
ID = catalog.TRAJECTORY_ID
TIME = catalog.TRAJECTORY_TIME
TARGETS = catalog.TRAJECTORY_TARGETS
HORIZONS = catalog.TRAJECTORY_HORIZONS
OUTPUTS: tuple[str, ...] = tuple(f"risk_{h}" for h in HORIZONS)
VALID_FRACTION = 0.2
HORIZON_TOLERANCE_DAYS = 7  # a snapshot this late still counts as "the risk at +h days"
EVAL_CUTS = 4  # history cut points per opportunity scored by evaluate()
THREADS = 1  # measured: 2 threads were 3-6x slower on this shared 2-core machine (see benchmarks/README.md)


@dataclass(frozen=True)
class TrajectoryParams:
    # Defaults chosen on an inner split of the default lake's training opportunities (see
    # benchmarks/README.md, "Sequence models"): about 16 s of one CPU core on 590k snapshots.
    sequence_length: int = 30
    epochs: int = 10
    hidden_size: int = 32
    batch_size: int = 256
    learning_rate: float = 0.005
    patience: int = 3
    max_windows: int = 20_000
    seed: int = 42


@dataclass
class TrainedTrajectory:
    """A fitted network with what serving needs, and the figures the runbook asks for."""

    net: TrajectoryNet
    features: tuple[str, ...]
    sequence_length: int
    metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    windows: dict[str, int] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)  # per epoch: loss, val_loss


class TrajectoryNet(nn.Module):
    """LSTM over raw snapshot features; scaling in, unscaling out, both stored as buffers."""

    def __init__(self, n_features: int, hidden_size: int, n_outputs: int = len(HORIZONS)) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, n_outputs)
        self.register_buffer("x_mean", torch.zeros(n_features))
        self.register_buffer("x_std", torch.ones(n_features))
        self.register_buffer("y_mean", torch.zeros(n_outputs))
        self.register_buffer("y_std", torch.ones(n_outputs))
        self.register_buffer("y_min", torch.full((n_outputs,), -math.inf))
        self.register_buffer("y_max", torch.full((n_outputs,), math.inf))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, steps, features) right-padded, ``lengths`` the real steps; risk units out."""
        scaled = torch.nan_to_num((x - self.x_mean) / self.x_std, nan=0.0)
        outputs, _ = self.lstm(scaled)
        # Right padding comes after the real steps, so the output at the last real step has not
        # seen any padding: gathering it masks the padding exactly (and is cheaper than packing).
        last = outputs[torch.arange(len(x)), (lengths - 1).clamp(min=0)]
        return self.head(last) * self.y_std + self.y_mean

    def predict(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Forecasts clipped to the range of risks seen in training."""
        return torch.maximum(torch.minimum(self(x, lengths), self.y_max), self.y_min)


# --- frames -----------------------------------------------------------------------------------


def _as_datetime(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return column.str.to_datetime(strict=False)
    return column.cast(pl.Datetime("us"))


def ordered(df: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by opportunity, then time, with ``snapshotDate`` as a datetime."""
    return df.with_columns(_as_datetime(pl.col(TIME), df.schema[TIME]).alias(TIME)).sort([ID, TIME])


def target_source(columns: Sequence[str]) -> str:
    """Which targets a frame carries: ``horizons`` (target_risk_30/60/90) or ``target_risk``."""
    if all(t in columns for t in TARGETS):
        return "horizons"
    if catalog.RISK_TARGET in columns:
        return catalog.RISK_TARGET
    return "none"


def with_horizon_targets(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` (ordered) with target_risk_30/60/90, derived from ``target_risk`` when needed.

    The risk at +h days is the ``target_risk`` of the same opportunity's first snapshot at or after
    +h days, if one exists within :data:`HORIZON_TOLERANCE_DAYS`; otherwise it is not observed.
    """
    if target_source(df.columns) != catalog.RISK_TARGET:
        return df
    base = df.drop([t for t in TARGETS if t in df.columns])
    later = base.select(ID, pl.col(TIME).alias("__at"), pl.col(catalog.RISK_TARGET).alias("__risk"))
    out = base.with_row_index("__row")
    for target, horizon in zip(TARGETS, HORIZONS):
        probe = out.select("__row", ID, (pl.col(TIME) + timedelta(days=horizon)).alias("__at")).sort("__at")
        found = probe.join_asof(
            later.sort("__at"),
            on="__at",
            by=ID,
            strategy="forward",
            tolerance=timedelta(days=HORIZON_TOLERANCE_DAYS),
            check_sortedness=False,  # both sides are sorted on __at just above
        )
        out = out.join(found.select("__row", pl.col("__risk").alias(target)), on="__row", how="left")
    return out.sort("__row").drop("__row")


def holdout_ids(df: pl.DataFrame, seed: int = 42, fraction: float = VALID_FRACTION) -> pl.Series:
    """The held-out opportunity ids: a seeded ``fraction`` of the distinct ids (at least one)."""
    ids = df.get_column(ID).unique().sort()
    n = max(1, int(round(fraction * ids.len())))
    picked = np.random.default_rng(seed).permutation(ids.len())[:n]
    return ids.gather(np.sort(picked))


def holdout(df: pl.DataFrame, seed: int = 42) -> pl.DataFrame:
    """Every snapshot of the opportunities the trainer validated on and never trained on."""
    held = holdout_ids(df, seed)
    return df.filter(pl.col(ID).is_in(held.implode())).sort([TIME, ID])


def split(df: pl.DataFrame, seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, validation) snapshots, split by opportunity."""
    held = pl.col(ID).is_in(holdout_ids(df, seed).implode())
    return df.filter(~held), df.filter(held)


# --- windows ----------------------------------------------------------------------------------


@dataclass
class Windows:
    """Right-padded histories ending at chosen snapshots, with their (maybe partly null) targets."""

    x: np.ndarray  # (n, steps, features) float32, zero padding
    lengths: np.ndarray  # (n,) int64, real steps
    y: np.ndarray | None = None  # (n, horizons) float32, NaN where not observed
    ends: np.ndarray | None = None  # row positions the windows end at


def _group_start(df: pl.DataFrame) -> np.ndarray:
    """For each row of an ordered frame, the position of its opportunity's first row."""
    position = df.select(pl.int_range(pl.len()).over(ID)).to_series().to_numpy()
    return np.arange(df.height) - position


def feature_matrix(df: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Raw feature values as float32, NaN where missing (the network reads NaN as the mean)."""
    return df.select([pl.col(f).cast(pl.Float32) for f in features]).to_numpy().astype(np.float32)


def windows(df: pl.DataFrame, features: Sequence[str], ends: np.ndarray, length: int) -> Windows:
    """Histories of at most ``length`` snapshots ending at row positions ``ends`` of ordered ``df``."""
    values = feature_matrix(df, features)
    start = _group_start(df)[ends]
    lengths = np.minimum(length, ends - start + 1).astype(np.int64)
    steps = np.arange(length)
    valid = steps[None, :] < lengths[:, None]
    index = np.where(valid, (ends - lengths + 1)[:, None] + steps[None, :], 0)
    x = np.where(valid[..., None], values[index], 0.0).astype(np.float32)
    return Windows(x, lengths, ends=ends)


def training_windows(df: pl.DataFrame, features: Sequence[str], length: int, cap: int, seed: int) -> Windows:
    """One window per snapshot with at least one observed target, at most ``cap`` (seeded sample)."""
    y = df.select([pl.col(t).cast(pl.Float32) for t in TARGETS]).to_numpy().astype(np.float32)
    ends = np.flatnonzero(~np.isnan(y).all(axis=1))
    if ends.size > cap:
        ends = np.sort(np.random.default_rng(seed).choice(ends, cap, replace=False))
    found = windows(df, features, ends, length)
    found.y = y[ends]
    return found


# --- training ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_settings(seed: int) -> Iterator[None]:
    """Seeded, deterministic, two threads; the caller's torch settings come back afterwards."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _masked_errors(predicted: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum of squared errors, sum of absolute errors, count) over observed targets."""
    observed = ~torch.isnan(y)
    diff = torch.where(observed, predicted - torch.nan_to_num(y), torch.zeros_like(predicted))
    return (diff**2).sum(), diff.abs().sum(), observed.sum()


def _fit_scaling(net: TrajectoryNet, data: Windows) -> None:
    steps = np.arange(data.x.shape[1])[None, :] < data.lengths[:, None]
    seen = data.x[steps]  # (real steps, features)
    x_mean = np.nanmean(seen, axis=0)
    x_std = np.nanstd(seen, axis=0)
    y_mean = np.nanmean(data.y, axis=0)
    y_std = np.nanstd(data.y, axis=0)
    net.x_mean.copy_(torch.from_numpy(np.nan_to_num(x_mean)))
    net.x_std.copy_(torch.from_numpy(np.where(np.nan_to_num(x_std) > 1e-6, x_std, 1.0)))
    net.y_mean.copy_(torch.from_numpy(np.nan_to_num(y_mean)))
    net.y_std.copy_(torch.from_numpy(np.where(np.nan_to_num(y_std) > 1e-6, y_std, 1.0)))
    net.y_min.copy_(torch.from_numpy(np.nan_to_num(np.nanmin(data.y, axis=0), nan=-np.inf)))
    net.y_max.copy_(torch.from_numpy(np.nan_to_num(np.nanmax(data.y, axis=0), nan=np.inf)))


def _tensors(data: Windows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    assert data.y is not None
    return torch.from_numpy(data.x), torch.from_numpy(data.lengths), torch.from_numpy(data.y)


def score_windows(net: TrajectoryNet, data: Windows, batch_size: int = 4096) -> tuple[float, float]:
    """(MSE, MAE) in risk units of ``net``'s clipped forecasts over the observed targets."""
    x, lengths, y = _tensors(data)
    sse = sae = count = 0.0
    net.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            s, a, c = _masked_errors(net.predict(x[i : i + batch_size], lengths[i : i + batch_size]), y[i : i + batch_size])
            sse, sae, count = sse + float(s), sae + float(a), count + float(c)
    return sse / max(count, 1.0), sae / max(count, 1.0)


def train(
    train_df: pl.DataFrame,
    valid_df: pl.DataFrame,
    features: Sequence[str],
    params: TrajectoryParams = TrajectoryParams(),
) -> TrainedTrajectory:
    """Fit on ``train_df``'s opportunities, early-stop on ``valid_df``'s; pure (no files, no tracking).

    Both frames are snapshot rows with target_risk_30/60/90 (see :func:`with_horizon_targets`).
    """
    train_df, valid_df = ordered(train_df), ordered(valid_df)
    with _torch_settings(params.seed):
        fit_data = training_windows(train_df, features, params.sequence_length, params.max_windows, params.seed)
        val_data = training_windows(
            valid_df, features, params.sequence_length, max(1, params.max_windows // 4), params.seed
        )
        net = TrajectoryNet(len(features), params.hidden_size)
        _fit_scaling(net, fit_data)
        optimizer = torch.optim.Adam(net.parameters(), lr=params.learning_rate)
        x, lengths, y = _tensors(fit_data)
        generator = torch.Generator().manual_seed(params.seed)
        best: tuple[float, int, dict[str, torch.Tensor]] = (math.inf, 0, copy.deepcopy(net.state_dict()))
        epoch = 0
        curves: dict[str, list[float]] = {"loss": [], "val_loss": []}
        for epoch in range(1, params.epochs + 1):
            net.train()
            epoch_sse, epoch_count = 0.0, 0.0
            for batch in torch.randperm(len(x), generator=generator).split(params.batch_size):
                sse, _, count = _masked_errors(net(x[batch], lengths[batch]), y[batch])
                loss = sse / count.clamp(min=1)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                epoch_sse += float(sse.detach())
                epoch_count += float(count)
            val_loss, _ = score_windows(net, val_data)
            curves["loss"].append(epoch_sse / max(epoch_count, 1.0))
            curves["val_loss"].append(val_loss)
            log.debug("epoch %d val_loss %.6f", epoch, val_loss)
            if val_loss < best[0] - 1e-7:
                best = (val_loss, epoch, copy.deepcopy(net.state_dict()))
            elif epoch - best[1] >= params.patience:
                break
        net.load_state_dict(best[2])
        net.eval()
        loss, mae = score_windows(net, fit_data)
        val_loss, val_mae = score_windows(net, val_data)
    return TrainedTrajectory(
        net=net,
        features=tuple(features),
        sequence_length=params.sequence_length,
        metrics={"loss": loss, "val_loss": val_loss, "mae": mae, "val_mae": val_mae},
        best_epoch=best[1],
        epochs_run=epoch,
        windows={"train": len(fit_data.x), "valid": len(val_data.x)},
        curves=curves,
    )


# --- serving ----------------------------------------------------------------------------------


def forecast(net: TrajectoryNet, features: Sequence[str], length: int, frame: pd.DataFrame | pl.DataFrame) -> pd.DataFrame:
    """One row per opportunity: ``opportunityId`` and risk_30/60/90 from its latest snapshots."""
    df = frame if isinstance(frame, pl.DataFrame) else pl.from_pandas(pd.DataFrame(frame).reset_index(drop=True))
    missing = [c for c in (ID, TIME, *features) if c not in df.columns]
    if missing:
        raise KeyError(f"input is missing columns {missing}; expected {ID}, {TIME} and {list(features)}")
    df = ordered(df.select(ID, TIME, *features))
    if df.height == 0:
        return pd.DataFrame({ID: [], **{name: np.array([], dtype="float64") for name in OUTPUTS}})
    last = df.select((pl.col(ID) != pl.col(ID).shift(-1)).fill_null(True)).to_series().to_numpy()
    ends = np.flatnonzero(last)
    data = windows(df, features, ends, length)
    net.eval()
    with torch.no_grad():
        risk = net.predict(torch.from_numpy(data.x), torch.from_numpy(data.lengths)).numpy().astype("float64")
    out = pd.DataFrame({ID: df.get_column(ID).gather(ends).to_list()})
    for i, name in enumerate(OUTPUTS):
        out[name] = risk[:, i]
    return out


class RiskTrajectoryModel(mlflow.pyfunc.PythonModel):
    """The served model: the network's weights are an artifact, its shape travels in the pickle."""

    def __init__(self, features: Sequence[str], sequence_length: int, hidden_size: int) -> None:
        self.features = tuple(features)
        self.sequence_length = sequence_length
        self.hidden_size = hidden_size
        self._net: TrajectoryNet | None = None

    def load_context(self, context: Any) -> None:
        net = TrajectoryNet(len(self.features), self.hidden_size)
        net.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        self._net = net.eval()

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        assert self._net is not None, "load_context was not called"
        return forecast(self._net, self.features, self.sequence_length, model_input)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_net": None}


def save(trained: TrainedTrajectory, model_dir: Path, example: pl.DataFrame) -> None:
    """Write ``trained`` as an MLflow pyfunc model at ``model_dir``."""
    with tempfile.TemporaryDirectory(dir=model_dir.parent) as tmp:
        weights = Path(tmp, "weights.pt")
        torch.save(trained.net.state_dict(), weights)
        first = example.get_column(ID).head(1)
        rows = ordered(example.filter(pl.col(ID).is_in(first.implode()))).tail(trained.sequence_length)
        input_example = rows.select(ID, TIME, *trained.features).to_pandas()
        output_example = forecast(trained.net, trained.features, trained.sequence_length, input_example)
        hidden = trained.net.lstm.hidden_size
        pyfunc_support.save_pyfunc(
            model_dir,
            RiskTrajectoryModel(trained.features, trained.sequence_length, hidden),
            {"weights": str(weights)},
            input_example,
            ["torch"],
            output_example=output_example,
            metadata={
                "model_id": MODEL_ID,
                "features": list(trained.features),
                "sequence_length": trained.sequence_length,
                "outputs": list(OUTPUTS),
            },
        )


# --- evaluation -------------------------------------------------------------------------------


def histories(df: pl.DataFrame, ends: np.ndarray, keys: Sequence[str], length: int) -> pl.DataFrame:
    """The last ``length`` snapshots up to each row position ``ends`` of ordered ``df``, each
    history under its own ``opportunityId`` from ``keys``: a frame any trajectory predictor takes,
    to forecast from points in the past where the future is known."""
    ends = np.asarray(ends, dtype=np.int64)
    start = _group_start(df)[ends]
    first = np.maximum(start, ends - length + 1)
    positions = np.concatenate([np.arange(a, b + 1) for a, b in zip(first, ends)]) if len(ends) else np.array([], np.int64)
    key_per_row = np.repeat(np.asarray(keys, dtype=object), ends - first + 1)
    return df[positions].with_columns(pl.Series(ID, key_per_row, dtype=pl.String))


def cut_histories(df: pl.DataFrame, length: int, cuts: int = EVAL_CUTS) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Histories ending at up to ``cuts`` evenly spaced labelled snapshots per opportunity.

    Returns (their snapshot rows, keyed by a per-cut id in ``opportunityId``; the targets per cut).
    """
    df = with_horizon_targets(ordered(df))
    labelled = df.with_row_index("__end").filter(pl.any_horizontal([pl.col(t).is_not_null() for t in TARGETS]))
    # the last labelled snapshot of each of ``cuts`` equal buckets (all of them when fewer)
    k, n = pl.int_range(pl.len()).over(ID), pl.len().over(ID)
    picked = labelled.filter((k * cuts // n) != ((k + 1) * cuts // n))
    ends = picked.get_column("__end").to_numpy().astype(np.int64)
    keys = [f"{opp}#{end}" for opp, end in zip(picked.get_column(ID).to_list(), ends)]
    targets = pl.DataFrame({ID: keys, **{t: picked.get_column(t) for t in TARGETS}})
    return histories(df, ends, keys, length), targets


def evaluate(predictor: Any, df: pl.DataFrame, sequence_length: int | None = None) -> dict[str, float]:
    """``loss`` (MSE) and ``mae`` in risk units of ``predictor.predict`` on ``df``'s opportunities.

    Each opportunity is scored at up to :data:`EVAL_CUTS` snapshots whose +30/60/90-day risk is
    known, from the history up to that snapshot. ``sequence_length`` only trims the history handed
    to the predictor (the model trims it anyway).
    """
    length = sequence_length or TrajectoryParams().sequence_length
    rows, targets = cut_histories(df, length)
    rows = rows.drop([c for c in (*TARGETS, catalog.RISK_TARGET) if c in rows.columns])
    if targets.height == 0:
        raise ValueError(f"no snapshot with an observed {'/'.join(TARGETS)} (or {catalog.RISK_TARGET}) to score")
    predicted = pl.from_pandas(pd.DataFrame(predictor.predict(rows.to_pandas()))).with_columns(pl.col(ID).cast(pl.String))
    joined = targets.join(predicted.select(ID, *OUTPUTS), on=ID, how="left")
    y = joined.select([pl.col(t).cast(pl.Float64) for t in TARGETS]).to_numpy()
    p = joined.select([pl.col(o).cast(pl.Float64) for o in OUTPUTS]).to_numpy()
    observed = ~np.isnan(y)
    errors = (p - np.nan_to_num(y))[observed]
    return {"loss": float(np.mean(errors**2)), "mae": float(np.mean(np.abs(errors)))}


# --- command line -----------------------------------------------------------------------------


def fit(df: pl.DataFrame, features: list[str], args: argparse.Namespace, model_dir: Path) -> trainer.FitResult:
    from models.contracts import DataContractError

    source = target_source(df.columns)
    rows = with_horizon_targets(ordered(df))
    train_df, valid_df = split(rows, args.seed)
    for part, name in ((train_df, "training"), (valid_df, "validation")):
        labelled = part.filter(pl.any_horizontal([pl.col(t).is_not_null() for t in TARGETS]))
        if labelled.height == 0:
            raise DataContractError(
                args.training_data,
                "/".join(TARGETS) if source == "horizons" else catalog.RISK_TARGET,
                f"observed targets on both the training and the validation opportunities "
                f"({rows.get_column(ID).n_unique()} opportunities, {int(VALID_FRACTION * 100)}% held out)",
                part.height,
            )
    params = TrajectoryParams(
        sequence_length=args.sequence_length,
        epochs=args.epochs,
        hidden_size=args.hidden_size,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience,
        max_windows=args.max_windows,
        seed=args.seed,
    )
    trained = train(train_df, valid_df, features, params)
    save(trained, model_dir, train_df)
    return trainer.FitResult(
        metrics=trained.metrics,
        history=trained.curves,
        extra_params={
            "target_source": source,
            "best_epoch": trained.best_epoch,
            "epochs_run": trained.epochs_run,
            "windows_train": trained.windows["train"],
            "windows_valid": trained.windows["valid"],
            "opportunities_train": train_df.get_column(ID).n_unique(),
            "opportunities_valid": valid_df.get_column(ID).n_unique(),
        },
    )


def build_parser() -> argparse.ArgumentParser:
    parser = trainer.build_parser(MODEL_ID, __doc__.splitlines()[0])
    defaults = TrajectoryParams()
    parser.add_argument("--sequence-length", type=trainer.positive_int, default=defaults.sequence_length)
    parser.add_argument("--epochs", type=trainer.positive_int, default=defaults.epochs, help="at most; early stopping")
    parser.add_argument("--hidden-size", type=trainer.positive_int, default=defaults.hidden_size)
    parser.add_argument("--batch-size", type=trainer.positive_int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=trainer.positive_float, default=defaults.learning_rate)
    parser.add_argument(
        "--patience", type=trainer.positive_int, default=defaults.patience, help="epochs without val_loss gain"
    )
    parser.add_argument(
        "--max-windows",
        type=trainer.positive_int,
        default=defaults.max_windows,
        help="train on at most this many histories (a seeded sample), to bound training time",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return trainer.run(MODEL_ID, build_parser(), fit, catalog.TRAJECTORY_FEATURES, argv)


if __name__ == "__main__":
    # Run the importable copy of this module: what it pickles (the pyfunc model) must name
    # models.risk_trajectory, not __main__, or it will not load in another process.
    from models.risk_trajectory import main as _main

    raise SystemExit(_main())
