"""Training reports: the plots a person looks at before trusting a model, logged on its MLflow run.

A metric is one number; a reliability diagram shows *where* a classifier is over-confident, a
residual plot which scores are off, a histogram where the anomaly threshold cuts. Every trainer
gets its plots from here through :func:`log_training_report`, called by ``models.trainer.run``
after the run is logged, so the five trainers stay free of plotting code and a plotting failure
can never fail training (the caller catches it).

Plots are drawn on the trainer's own held-out rows (``module.holdout``), all of them, filtered as
the trainer's ``evaluate`` filters them, and scored by the pyfunc model just saved, i.e. exactly
what will be served: a figure in a plot's title is the metric the run logged. Matplotlib runs on the Agg canvas with no
pyplot state, so reports are safe in worker threads and need no display.

Also logged, for ``monitor-models``: ``monitoring/reference.parquet``, a seeded sample of the
training frame's numeric feature columns, so drift is measured against what this very run trained
on even after the training file is gone.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import timedelta
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from salesrisk import catalog

log = logging.getLogger("salesrisk.reports")

REPORT_PATH = "report"  # artifact folder on the run
REFERENCE_PATH = "monitoring"  # artifact folder of the reference sample
REFERENCE_FILE = "reference.parquet"
DRAW_POINTS = 5000  # points drawn in a scatter plot (a seeded sample beyond this; titles use every row)
SHAP_ROWS = 200  # rows explained for the SHAP summary (mean |SHAP| is stable by then)
REFERENCE_ROWS = 10_000
TRAJECTORY_METRICS = ("loss", "val_loss", "mae", "val_mae")
DPI = 80


# --- figures ----------------------------------------------------------------------------------


def _figure(
    width: float = 6.4, height: float = 4.8, rows: int = 1, cols: int = 1, *, left: float = 0.8, **kwargs: Any
) -> tuple[Any, Any]:
    """A figure on the Agg canvas, without pyplot's global state.

    Margins are fixed (``left`` in inches, for long tick labels) rather than computed by a layout
    engine: constrained layout measured over a third of the drawing time on this machine.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(
        left=min(left / width, 0.6), right=1 - 0.25 / width, bottom=0.75 / height, top=1 - 0.6 / height,
        hspace=0.9 / height * rows, wspace=0.35,
    )
    axes = figure.subplots(rows, cols, squeeze=kwargs.pop("squeeze", True), **kwargs)
    return figure, axes


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # light compression: PNG encoding at the default level costs more than drawing small plots
    figure.savefig(path, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    return path


def reliability_diagram(y_true: np.ndarray, y_prob: np.ndarray, path: Path, bins: int = 10) -> Path:
    """Observed win rate against mean predicted probability per equal-width bin, with the share
    of rows per bin underneath: points off the diagonal are miscalibrated probabilities."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    y_true, y_prob = np.asarray(y_true).astype(int), np.asarray(y_prob, dtype="float64")
    observed, predicted = calibration_curve(y_true, y_prob, n_bins=bins, strategy="uniform")
    figure, (top, bottom) = _figure(6.0, 6.0, 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    top.plot(predicted, observed, marker="o", label=f"model (Brier {brier_score_loss(y_true, y_prob):.4f})")
    top.set_ylabel("observed win rate")
    top.set_title(f"Reliability diagram ({len(y_true)} held-out deals)")
    top.legend(loc="upper left")
    top.set_ylim(-0.02, 1.02)
    bottom.hist(y_prob, bins=np.linspace(0, 1, bins + 1), color="tab:blue", alpha=0.7)
    bottom.set_xlabel("predicted win probability")
    bottom.set_ylabel("deals")
    return _save(figure, path)


def roc_curve_plot(y_true: np.ndarray, y_prob: np.ndarray, path: Path) -> Path:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y_true, y_prob)
    figure, ax = _figure(5.5, 5.0)
    ax.plot(fpr, tpr, label=f"model (AUC_ROC {roc_auc_score(y_true, y_prob):.4f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC curve ({len(y_true)} held-out deals)")
    ax.legend(loc="lower right")
    return _save(figure, path)


def _drawn(n: int, seed: int = 0) -> np.ndarray:
    """Which of ``n`` points a scatter plot draws: all up to DRAW_POINTS, else a seeded sample.
    Only the drawing is sampled; every figure in a title uses all ``n``."""
    if n <= DRAW_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, DRAW_POINTS, replace=False))


def _rows_note(n: int, what: str = "held-out rows") -> str:
    return f"{n} {what}" + (f", {DRAW_POINTS} drawn" if n > DRAW_POINTS else "")


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, path: Path, target: str = catalog.RISK_TARGET) -> Path:
    from sklearn.metrics import r2_score, root_mean_squared_error

    actual, predicted = np.asarray(actual, dtype="float64"), np.asarray(predicted, dtype="float64")
    figure, ax = _figure(5.5, 5.0)
    drawn = _drawn(len(actual))
    ax.scatter(actual[drawn], predicted[drawn], s=8, alpha=0.4)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], linestyle="--", color="grey")
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel("predicted")
    ax.set_title(
        f"Predicted vs actual ({_rows_note(len(actual))})\n"
        f"RMSE {root_mean_squared_error(actual, predicted):.4f}  R2 {r2_score(actual, predicted):.4f}"
    )
    return _save(figure, path)


def residuals_plot(actual: np.ndarray, predicted: np.ndarray, path: Path) -> Path:
    """Residual (actual - predicted) against the prediction, and their distribution."""
    actual, predicted = np.asarray(actual, dtype="float64"), np.asarray(predicted, dtype="float64")
    residual = actual - predicted
    figure, (left, right) = _figure(10.0, 4.2, 1, 2)
    drawn = _drawn(len(actual))
    left.scatter(predicted[drawn], residual[drawn], s=8, alpha=0.4)
    left.axhline(0, color="grey", linestyle="--")
    left.set_xlabel("predicted")
    left.set_ylabel("actual - predicted")
    left.set_title(f"Residuals against prediction ({_rows_note(len(actual))})")
    right.hist(residual, bins=40, color="tab:orange", alpha=0.8)
    right.axvline(0, color="grey", linestyle="--")
    right.set_xlabel("actual - predicted")
    right.set_title(f"Residuals: mean {residual.mean():+.4f}, sd {residual.std():.4f}")
    return _save(figure, path)


def loss_curves(history: Mapping[str, Sequence[tuple[int, float]]], path: Path, note: str = "") -> Path:
    """Per-step curves of each metric when there is a history; one bar per metric when each was
    logged once (then ``note`` should say so: a single value is not a curve)."""
    figure, ax = _figure(6.4, 4.4)
    per_step = any(len(points) > 1 for points in history.values())
    if per_step:
        for name, points in history.items():
            steps, values = zip(*sorted(points)) if points else ((), ())
            ax.plot(steps, values, marker=".", label=name)
        ax.set_xlabel("epoch (MLflow step)")
        ax.set_ylabel("value")
        ax.legend()
        ax.set_title("Training curves")
    elif not any(history.values()):
        ax.text(0.5, 0.5, f"no {', '.join(history) or 'loss'} metric on this run", ha="center", va="center")
        ax.set_axis_off()
    else:
        names = [name for name, points in history.items() if points]
        values = [history[name][-1][1] for name in names]
        bars = ax.bar(names, values, color=["tab:blue" if not n.startswith("val_") else "tab:orange" for n in names])
        ax.bar_label(bars, fmt="%.4g")
        ax.margins(y=0.15)
        ax.set_ylabel("value (risk units; loss = MSE)")
        ax.set_title("Final metrics of the saved weights")
    if note:
        figure.subplots_adjust(bottom=0.25)
        figure.text(0.01, 0.01, note, fontsize=8, color="dimgrey", ha="left", va="bottom", wrap=True)
    return _save(figure, path)


def forecast_plot(
    actual: pd.DataFrame,
    forecast: pd.DataFrame,
    path: Path,
    *,
    holdout_start: Any = None,
    holdout_label: str = "held-out horizon",
    components: pd.DataFrame | None = None,
) -> Path:
    """Actuals (``ds``, ``y``) with the forecast (``ds``, ``yhat``, ``yhat_lower``, ``yhat_upper``)
    and its interval; below, one small panel per component (``ds`` plus one column each) when given,
    each on its own scale (a trend in millions would flatten a seasonality in thousands)."""
    names = [c for c in components.columns if c != "ds"] if components is not None else []
    ratios = [3.0] + [1.4] * len(names)
    figure, axes = _figure(9.0, 3.6 + 1.6 * len(names), 1 + len(names), 1, sharex=True, squeeze=False,
                           gridspec_kw={"height_ratios": ratios})
    top = axes[0, 0]
    top.plot(actual["ds"], actual["y"], color="black", linewidth=1, label="actual")
    top.plot(forecast["ds"], forecast["yhat"], color="tab:blue", linewidth=1.2, label="forecast")
    top.fill_between(forecast["ds"], forecast["yhat_lower"], forecast["yhat_upper"], color="tab:blue", alpha=0.2, label="interval")
    if holdout_start is not None:
        top.axvspan(holdout_start, forecast["ds"].max(), color="tab:orange", alpha=0.12, label=holdout_label)
    top.set_ylabel("revenue")
    top.set_title("Forecast against actuals")
    top.legend(loc="upper left", fontsize=8)
    for ax, name in zip(axes[1:, 0], names):
        ax.plot(components["ds"], components[name], linewidth=1, color="tab:green")
        ax.set_ylabel(name, fontsize=8)
    for ax in axes[:, 0]:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    for label in axes[-1, 0].get_xticklabels():
        label.set_rotation(25)
        label.set_horizontalalignment("right")
    return _save(figure, path)


def anomaly_histogram(
    scores: np.ndarray, threshold: float, path: Path, labels: np.ndarray | None = None, f1: float | None = None
) -> Path:
    """Anomaly scores (higher is more anomalous) with the threshold above which a row is flagged;
    ``f1`` (of the served ``is_anomaly`` against the labels) goes in the title."""
    scores = np.asarray(scores, dtype="float64")
    figure, ax = _figure(6.4, 4.4)
    bins = np.linspace(float(scores.min()), float(scores.max()), 50)
    if labels is not None:
        labels = np.asarray(labels).astype(bool)
        ax.hist(scores[~labels], bins=bins, alpha=0.7, label="labelled normal")
        ax.hist(scores[labels], bins=bins, alpha=0.7, color="tab:red", label="labelled anomaly")
    else:
        ax.hist(scores, bins=bins, alpha=0.8, label="held-out rows")
    flagged = float((scores >= threshold).mean())
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4f} ({flagged:.1%} flagged)")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("rows")
    ax.set_title(f"Anomaly scores ({len(scores)} held-out rows)" + (f"\nF1 {f1:.4f}" if f1 is not None else ""))
    ax.legend(fontsize=8)
    return _save(figure, path)


def feature_importance(mean_abs: Mapping[str, float], path: Path, title: str = "Top features: mean |SHAP|") -> Path:
    """Horizontal bars, largest on top."""
    items = sorted(mean_abs.items(), key=lambda kv: kv[1])
    longest = max((len(name) for name, _ in items), default=8)
    figure, ax = _figure(6.4, max(2.5, 0.35 * len(items) + 1.4), left=0.3 + 0.075 * longest)
    ax.barh([name for name, _ in items], [value for _, value in items], color="tab:purple")
    ax.set_xlabel("mean |SHAP value| (model output units)")
    ax.set_title(title)
    return _save(figure, path)


def drift_over_time(history: pl.DataFrame, path: Path, threshold: float) -> Path:
    """Per endpoint, each feature's PSI at every monitoring run, with the alert threshold.

    ``history`` has ``checked_at``, ``endpoint``, ``feature`` and ``psi`` columns.
    """
    endpoints = sorted(history.get_column("endpoint").unique().to_list()) if history.height else []
    panels = max(1, len(endpoints))
    figure, axes = _figure(9.0, 3.4 * panels, panels, 1, squeeze=False)
    for ax, endpoint in zip(axes[:, 0], endpoints or [None]):
        if endpoint is None:
            ax.text(0.5, 0.5, "no drift measured yet", ha="center", va="center")
            continue
        part = history.filter(pl.col("endpoint") == endpoint).sort("checked_at")
        for (feature,), rows in part.group_by(["feature"], maintain_order=True):
            ax.plot(rows.get_column("checked_at").to_list(), rows.get_column("psi").to_list(), marker="o", markersize=3, label=feature)
        ax.axhline(threshold, color="red", linestyle="--", label=f"threshold {threshold:g}")
        first, last = part.get_column("checked_at").min(), part.get_column("checked_at").max()
        if first == last:  # one run so far: a day either side, not matplotlib's default of years
            ax.set_xlim(first - timedelta(days=1), last + timedelta(days=1))
        ax.set_ylabel("PSI")
        ax.set_title(f"{endpoint}: population stability index per feature")
        ax.legend(loc="upper left", fontsize=7, ncol=3)
    for label in axes[-1, 0].get_xticklabels():
        label.set_rotation(25)
        label.set_horizontalalignment("right")
    return _save(figure, path)


# --- explanations -----------------------------------------------------------------------------


def shap_matrix(model_id: str, predictor: Any, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
    """Per-row SHAP values of a CatBoost model, from the objects inside the saved pyfunc.

    ``None`` when the model is not one of the CatBoost ones or its inner objects are not reachable
    (a trainer may change them); the caller then falls back to ``top_factors``.
    """
    from models import tabular

    try:
        inner = predictor.unwrap_python_model()
        if model_id == "win_probability":
            model = inner._model
            return np.asarray(model.contributions(tabular.model_frame(frame, model.spec))), list(model.spec.columns)
        if model_id == "risk_scoring":
            from catboost import Pool

            pool = Pool(tabular.model_frame(frame, inner.spec), cat_features=inner.spec.categorical_positions)
            return np.asarray(inner._model.get_feature_importance(pool, type="ShapValues"))[:, :-1], list(inner.spec.columns)
    except (AttributeError, KeyError, TypeError) as error:
        log.info("SHAP values not reachable in the saved %s model (%s); using top_factors", model_id, error)
    return None


def mean_abs_from_top_factors(top_factors: Sequence[str]) -> dict[str, float]:
    """Mean |contribution| per feature from the served ``top_factors`` JSON (top k per row; a
    feature outside a row's top k counts as 0, so this is a lower bound of mean |SHAP|)."""
    totals: dict[str, float] = {}
    for row in top_factors:
        for item in json.loads(row) if isinstance(row, str) else row:  # a JSON array, or the text of one
            totals[item["feature"]] = totals.get(item["feature"], 0.0) + abs(float(item["contribution"]))
    n = max(len(top_factors), 1)
    return {name: total / n for name, total in totals.items()}


def mean_abs_shap(shap: np.ndarray, columns: Sequence[str]) -> dict[str, float]:
    return {name: float(value) for name, value in zip(columns, np.abs(shap).mean(axis=0))}


# --- per-model reports ------------------------------------------------------------------------


def held_out(model_id: str, training_data: pl.DataFrame, args: argparse.Namespace) -> pl.DataFrame:
    """The trainer's own held-out rows for this run's parameters (seed, industry, horizon)."""
    from models import specs

    return specs.get(model_id).trainer.holdout(training_data, vars(args))


def report_rows(model_id: str, training_data: pl.DataFrame, args: argparse.Namespace) -> pl.DataFrame:
    """The rows a report scores: the held-out rows the run's logged metrics were computed on, all
    of them (no sample), filtered as the trainer's ``evaluate`` filters them (the spec's Report)."""
    from models import specs

    report = specs.get(model_id).report
    if report is None or report.rows == "none":  # the plot comes from the run's metrics, not from scoring
        return training_data.clear()
    rows = held_out(model_id, training_data, args)
    return report.scored(rows) if report.scored is not None else rows


def _capped(rows: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    return rows.sample(n=n, seed=seed) if rows.height > n else rows


def _shap_plot(model_id: str, predictor: Any, rows: pl.DataFrame, output: pd.DataFrame, out: Path, seed: int) -> Path:
    from models import tabular

    sample = _capped(rows, SHAP_ROWS, seed)
    found = shap_matrix(model_id, predictor, tabular.pandas_input(sample, predictor))
    if found is not None:
        importance = mean_abs_shap(*found)
        title = f"Top features: mean |SHAP| on {sample.height} held-out rows"
    else:
        importance = mean_abs_from_top_factors(output["top_factors"].tolist())
        title = "Top features: mean |contribution| of the served top_factors (top 3 per row)"
    return feature_importance(importance, out / "shap_importance.png", title)


def _win_probability(predictor: Any, rows: pl.DataFrame, out: Path, args: argparse.Namespace) -> list[Path]:
    from models import tabular

    output = predictor.predict(tabular.pandas_input(rows, predictor))
    y = rows.get_column(catalog.WIN_TARGET).to_numpy().astype(int)
    p = output["win_probability"].to_numpy(dtype="float64")
    paths = [reliability_diagram(y, p, out / "reliability_diagram.png")]
    if len(np.unique(y)) == 2:
        paths.append(roc_curve_plot(y, p, out / "roc_curve.png"))
    paths.append(_shap_plot("win_probability", predictor, rows, output, out, args.seed))
    return paths


def _risk_scoring(predictor: Any, rows: pl.DataFrame, out: Path, args: argparse.Namespace) -> list[Path]:
    from models import tabular

    output = predictor.predict(tabular.pandas_input(rows, predictor))
    actual = rows.get_column(catalog.RISK_TARGET).to_numpy().astype("float64")
    predicted = output["risk_score"].to_numpy(dtype="float64")
    return [
        predicted_vs_actual(actual, predicted, out / "predicted_vs_actual.png"),
        residuals_plot(actual, predicted, out / "residuals.png"),
        _shap_plot("risk_scoring", predictor, rows, output, out, args.seed),
    ]


def _anomaly(predictor: Any, rows: pl.DataFrame, out: Path, args: argparse.Namespace) -> list[Path]:
    from models import tabular

    output = predictor.predict(tabular.pandas_input(rows, predictor))
    scores = output["anomaly_score"].to_numpy(dtype="float64")
    flagged = output["is_anomaly"].to_numpy().astype(bool)
    labels = rows.get_column(catalog.ANOMALY_LABEL).cast(pl.Boolean).to_numpy() if catalog.ANOMALY_LABEL in rows.columns else None
    f1 = None
    if labels is not None:
        from sklearn.metrics import f1_score

        f1 = float(f1_score(labels, flagged, pos_label=True, zero_division=0.0))
    return [anomaly_histogram(scores, anomaly_threshold(predictor, scores, flagged), out / "anomaly_scores.png", labels, f1)]


def anomaly_threshold(predictor: Any, scores: np.ndarray, flagged: np.ndarray) -> float:
    """The forest's own cut (``-offset_``: rows scoring above it are flagged), else the midpoint
    between the highest unflagged and the lowest flagged score."""
    try:
        return float(-predictor.unwrap_python_model()._pipeline.named_steps["forest"].offset_)
    except (AttributeError, KeyError, TypeError):
        if flagged.any() and (~flagged).any():
            return float((scores[flagged].min() + scores[~flagged].max()) / 2)
        return float(np.quantile(scores, 0.9))


def _risk_trajectory(predictor: Any, rows: pl.DataFrame, out: Path, args: argparse.Namespace) -> list[Path]:
    import mlflow
    from mlflow.tracking import MlflowClient

    run = mlflow.active_run()
    history: dict[str, list[tuple[int, float]]] = {}
    note = ""
    if run is not None:
        client = MlflowClient()
        for name in TRAJECTORY_METRICS:
            # per-epoch values live under epoch_<name> (models/trainer.py); else the final value
            points = client.get_metric_history(run.info.run_id, f"epoch_{name}")
            points = points or client.get_metric_history(run.info.run_id, name)
            history[name] = [(m.step, m.value) for m in points]
        params = client.get_run(run.info.run_id).data.params
        if not any(len(points) > 1 for points in history.values()):
            note = (
                "The trainer logs each metric once (the restored best epoch "
                f"{params.get('best_epoch', '?')} of {params.get('epochs_run', '?')} run), not per epoch: "
                "no curve to draw."
            )
    return [loss_curves(history, out / "loss_curves.png", note)]


def _revenue_forecast(
    predictor: Any, rows: pl.DataFrame, out: Path, args: argparse.Namespace, training_data: pl.DataFrame
) -> list[Path]:
    frame = training_data  # the series as the trainer normalised it to (ds, y)
    horizon = rows.height
    window = frame.tail(min(frame.height, 4 * horizon))
    answer = pd.DataFrame(predictor.predict(window.drop("y").to_pandas()))
    answer["ds"] = pd.to_datetime(answer["ds"])
    actual = window.select("ds", "y").to_pandas()
    refit = bool(getattr(args, "refit", True))
    label = "last horizon (held out of the first fit; the saved model was refit on it)" if refit else "held-out horizon"
    return [
        forecast_plot(
            actual,
            answer,
            out / "forecast.png",
            holdout_start=rows.get_column("ds").min(),
            holdout_label=label,
            components=forecast_components(predictor, window),
        )
    ]


def forecast_components(predictor: Any, window: pl.DataFrame) -> pd.DataFrame | None:
    """NeuralProphet's trend and seasonal components over ``window``, from the model inside the
    saved pyfunc; ``None`` when the served method has no NeuralProphet or it is not reachable."""
    import warnings

    try:
        model = predictor.unwrap_python_model()._model
        if model is None:  # a statistical method serves: there are no components to draw
            return None
        regressors = tuple(model.config_regressors.regressors or ())
        data = window.select("ds", "y", *regressors).to_pandas()
        np_log = logging.getLogger("NP")
        level = np_log.level
        np_log.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predicted = model.predict(data)
        finally:
            np_log.setLevel(level)
    except Exception as error:  # noqa: BLE001 - components are an extra; the forecast plot stands alone
        log.info("forecast components not reachable: %s", error)
        return None
    names = [c for c in predicted.columns if c == "trend" or c.startswith(("season_", "future_regressor_", "events_"))]
    return predicted[["ds", *names]].assign(ds=pd.to_datetime(predicted["ds"])) if names else None


# --- entry points -----------------------------------------------------------------------------


def reference_sample(predictor: Any, training_data: pl.DataFrame, seed: int = 42) -> pl.DataFrame | None:
    """The numeric feature columns the model takes, a seeded sample of at most REFERENCE_ROWS."""
    schema = predictor.metadata.get_input_schema() if predictor.metadata else None
    names = schema.input_names() if schema is not None and schema.has_input_names() else []
    columns = [
        n
        for n in names
        if n in training_data.columns
        and n not in catalog.NON_FEATURE_COLUMNS
        and (training_data.schema[n].is_numeric() or training_data.schema[n] == pl.Boolean)
    ]
    if not columns:
        return None
    frame = training_data.select([pl.col(c).cast(pl.Float64) for c in columns])
    return _capped(frame, REFERENCE_ROWS, seed)


def log_training_report(model_id: str, model_dir: Path, training_data: pl.DataFrame, args: argparse.Namespace) -> list[Path]:
    """Plot the just-saved model on its held-out rows and log the PNGs to the active MLflow run
    under ``report/``; return the files (written to ``<output>/report``)."""
    import mlflow

    from models import specs

    started = time.perf_counter()
    predictor = mlflow.pyfunc.load_model(str(model_dir))
    out = Path(model_dir).parent / REPORT_PATH
    seed = int(getattr(args, "seed", 42))
    report = specs.get(model_id).report
    if report is None:
        return []
    rows = report_rows(model_id, training_data, args)
    paths = report.plots(predictor, rows, out, args, training_data)
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=REPORT_PATH)
    reference = reference_sample(predictor, training_data, seed)
    if reference is not None:
        target = out / REFERENCE_FILE
        reference.write_parquet(target)
        mlflow.log_artifact(str(target), artifact_path=REFERENCE_PATH)
    log.info("report of %s: %d plot(s) in %.2f s", model_id, len(paths), time.perf_counter() - started)
    return paths


def log_report_to_run(run_id: str, model_id: str, model_dir: Path, training_data: pl.DataFrame, args: argparse.Namespace) -> list[Path]:
    """:func:`log_training_report` into run ``run_id``: the active run when it is that one (an
    Azure ML job), else the run resumed for the time of the report."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        return log_training_report(model_id, model_dir, training_data, args)
    with mlflow.start_run(run_id=run_id):
        return log_training_report(model_id, model_dir, training_data, args)
