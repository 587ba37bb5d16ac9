"""Model monitoring arithmetic: drift between training and live inputs, live performance, breaches.

Pure functions of frames and arrays (no lake, no MLflow, no Prefect), so each rule can be tested on
generated data and the ``monitor-models`` flow only moves data in and results out.

Why a feature drifts only when PSI *and* the KS test agree: PSI measures how far the distribution
moved (0.1 noticeable, 0.2 the usual "act" line), the KS p-value whether the move could be chance.
On a large window KS flags differences too small to matter; on a small one PSI is noisy. Requiring
both keeps a daily check quiet on unchanged data and loud on a real shift.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from salesrisk import catalog

PSI_BINS = 10
PSI_FLOOR = 1e-4  # share given to an empty bin, so an unseen bin counts heavily but finitely
DRIFT_KIND = "drift"
PERFORMANCE_KIND = "performance"


@dataclass(frozen=True)
class Thresholds:
    """The alert lines; :meth:`from_settings` reads them from ``SALESRISK_MONITOR_*``."""

    psi: float = 0.2
    ks_pvalue: float = 0.01
    brier_max: float = 0.25
    auc_min: float = 0.55
    risk_rmse_max: float = 0.5
    mape_max: float = 25.0
    min_rows: int = 100

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        return cls(
            psi=settings.monitor_psi_threshold,
            ks_pvalue=settings.monitor_ks_pvalue,
            brier_max=settings.monitor_brier_max,
            auc_min=settings.monitor_auc_min,
            risk_rmse_max=settings.monitor_risk_rmse_max,
            mape_max=settings.monitor_mape_max,
            min_rows=settings.monitor_min_rows,
        )


# --- drift ------------------------------------------------------------------------------------


def _finite(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype="float64")
    return array[np.isfinite(array)]


def psi_bins(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Interior bin edges: reference deciles, or the distinct values of a discrete feature."""
    reference = _finite(reference)
    distinct = np.unique(reference)
    if len(distinct) <= bins:  # a code or a small count: one bin per value
        return (distinct[:-1] + distinct[1:]) / 2
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share per bin (``len(edges) + 1`` of them) plus a last bin for missing values."""
    values = np.asarray(values, dtype="float64")
    missing = ~np.isfinite(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, missing.sum()).astype("float64")
    return counts / max(counts.sum(), 1.0)


def population_stability_index(reference: Any, current: Any, bins: int = PSI_BINS) -> float:
    """PSI = sum over bins of (current - reference share) * ln(current / reference share), on the
    reference's decile bins; missing values are a bin of their own."""
    edges = psi_bins(np.asarray(reference, dtype="float64"), bins)
    ref = np.clip(_shares(reference, edges), PSI_FLOOR, None)
    cur = np.clip(_shares(current, edges), PSI_FLOOR, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_test(reference: Any, current: Any) -> tuple[float, float]:
    """(statistic, p-value) of scipy's two-sample Kolmogorov-Smirnov test on the finite values."""
    from scipy.stats import ks_2samp

    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return math.nan, math.nan
    result = ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    reference_rows: int
    current_rows: int
    drifted: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def numeric_columns(frame: pl.DataFrame) -> list[str]:
    return [name for name, dtype in frame.schema.items() if dtype.is_numeric() or dtype == pl.Boolean]


def feature_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    thresholds: Thresholds = Thresholds(),
    features: Sequence[str] | None = None,
) -> list[FeatureDrift]:
    """PSI and KS per numeric feature present in both frames (or in ``features``).

    A feature drifts when PSI reaches the threshold and the KS p-value is below its threshold.
    Nothing is judged below ``min_rows`` current rows: the list is empty.
    """
    if current.height < thresholds.min_rows or reference.height == 0:
        return []
    shared = set(numeric_columns(reference)) & set(numeric_columns(current))
    names = [name for name in (features or numeric_columns(reference)) if name in shared]
    out = []
    for name in names:
        ref = reference.get_column(name).cast(pl.Float64).to_numpy()
        cur = current.get_column(name).cast(pl.Float64).to_numpy()
        psi = population_stability_index(ref, cur)
        statistic, pvalue = ks_test(ref, cur)
        drifted = psi >= thresholds.psi and (math.isfinite(pvalue) and pvalue < thresholds.ks_pvalue)
        out.append(FeatureDrift(name, psi, statistic, pvalue, len(ref), len(cur), bool(drifted)))
    return out


# --- live performance -------------------------------------------------------------------------


def win_probability_performance(y_true: Any, y_prob: Any) -> dict[str, float]:
    """Brier, AUC_ROC (when both outcomes occur) and ECE of logged win probabilities."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    from models.win_probability import expected_calibration_error

    y, p = np.asarray(y_true).astype(int), np.asarray(y_prob, dtype="float64")
    out = {"rows": float(len(y)), "Brier": float(brier_score_loss(y, p)), "ECE": expected_calibration_error(y, p)}
    if len(np.unique(y)) == 2:
        out["AUC_ROC"] = float(roc_auc_score(y, p))
    return out


def risk_score_performance(actual: Any, predicted: Any) -> dict[str, float]:
    """RMSE and MAE of logged risk scores against the realised target_risk (1 - target_win)."""
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    a, p = np.asarray(actual, dtype="float64"), np.asarray(predicted, dtype="float64")
    return {"rows": float(len(a)), "RMSE": float(root_mean_squared_error(a, p)), "MAE": float(mean_absolute_error(a, p))}


def forecast_performance(actual: Any, predicted: Any, lower: Any = None, upper: Any = None) -> dict[str, float]:
    """MAPE (percent, over non-zero actuals, as the trainer reports it), RMSE, MAE and, with an
    interval, the share of actuals inside it."""
    from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, root_mean_squared_error

    a, p = np.asarray(actual, dtype="float64"), np.asarray(predicted, dtype="float64")
    nonzero = a != 0
    out = {
        "rows": float(len(a)),
        "MAPE": float(100 * mean_absolute_percentage_error(a[nonzero], p[nonzero])) if nonzero.any() else math.nan,
        "RMSE": float(root_mean_squared_error(a, p)),
        "MAE": float(mean_absolute_error(a, p)),
    }
    if lower is not None and upper is not None:
        lo, hi = np.asarray(lower, dtype="float64"), np.asarray(upper, dtype="float64")
        out["interval_coverage"] = float(np.mean((a >= lo) & (a <= hi)))
    return out


# --- breaches ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """``metric`` must stay at or below (``"max"``) or at or above (``"min"``) ``limit``."""

    metric: str
    direction: str
    limit: float
    setting: str  # the environment variable that sets ``limit``

    def breached(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value > self.limit if self.direction == "max" else value < self.limit


def performance_rules(performance_kind: str | None, thresholds: Thresholds) -> list[Rule]:
    """The live-performance rules of an endpoint by what it predicts."""
    if performance_kind == "win_probability":
        return [
            Rule("Brier", "max", thresholds.brier_max, "SALESRISK_MONITOR_BRIER_MAX"),
            Rule("AUC_ROC", "min", thresholds.auc_min, "SALESRISK_MONITOR_AUC_MIN"),
        ]
    if performance_kind == "risk_score":
        return [Rule("RMSE", "max", thresholds.risk_rmse_max, "SALESRISK_MONITOR_RISK_RMSE_MAX")]
    if performance_kind == "forecast":
        return [Rule("MAPE", "max", thresholds.mape_max, "SALESRISK_MONITOR_MAPE_MAX")]
    return []


@dataclass(frozen=True)
class Breach:
    kind: str  # drift | performance
    metric: str
    value: float
    threshold: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_breaches(
    drift: Iterable[FeatureDrift],
    performance: Mapping[str, float],
    rules: Sequence[Rule],
    thresholds: Thresholds = Thresholds(),
) -> list[Breach]:
    """Every drifted feature and every broken performance rule; performance is judged only on at
    least ``min_rows`` matched outcomes (``performance["rows"]``)."""
    out = [
        Breach(
            DRIFT_KIND,
            f"PSI:{d.feature}",
            d.psi,
            thresholds.psi,
            f"{d.feature}: PSI {d.psi:.3f} >= {thresholds.psi:g} and KS p-value {d.ks_pvalue:.2g} < {thresholds.ks_pvalue:g}",
        )
        for d in drift
        if d.drifted
    ]
    if performance.get("rows", 0) >= thresholds.min_rows:
        for rule in rules:
            value = performance.get(rule.metric, math.nan)
            if rule.breached(value):
                sign = ">" if rule.direction == "max" else "<"
                out.append(
                    Breach(PERFORMANCE_KIND, rule.metric, value, rule.limit,
                           f"live {rule.metric} {value:.4f} {sign} {rule.limit:g} ({rule.setting})")
                )
    return out


@dataclass
class EndpointCheck:
    """What one monitoring run found for one endpoint, and what it did about it."""

    endpoint_key: str
    model_name: str | None = None
    version: str | None = None
    status: str = "checked"  # checked | not deployed | skipped
    reference_source: str = ""
    window_rows: int = 0
    drift: list[dict[str, Any]] = field(default_factory=list)
    performance: dict[str, float] = field(default_factory=dict)
    breaches: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    action: str = "none"
    action_result: str = ""

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_action(actions: Mapping[str, str], endpoint_key: str, model_id: str) -> str:
    """The configured action: by endpoint key first (an industry slot, e.g.
    risk_scoring_industry/software, then its endpoint risk_scoring_industry), then by model id."""
    return actions.get(endpoint_key) or actions.get(catalog.split_slot(endpoint_key)[0]) or actions.get(model_id) or "none"


def history_rows(check: EndpointCheck, checked_at: Any) -> list[dict[str, Any]]:
    """Long-format history: one row per feature (PSI, KS) and one per performance metric."""
    base = {"checked_at": checked_at, "endpoint": check.endpoint_key, "model_name": check.model_name or "",
            "model_version": check.version or ""}
    rows = [
        {**base, "kind": DRIFT_KIND, "feature": d["feature"], "metric": "PSI", "value": d["psi"],
         "ks_pvalue": d["ks_pvalue"], "breached": d["drifted"]}
        for d in check.drift
    ]
    breached_metrics = {b["metric"] for b in check.breaches if b["kind"] == PERFORMANCE_KIND}
    rows += [
        {**base, "kind": PERFORMANCE_KIND, "feature": "", "metric": name, "value": float(value),
         "ks_pvalue": math.nan, "breached": name in breached_metrics}
        for name, value in check.performance.items()
        if name != "rows"
    ]
    return rows


HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "checked_at": pl.Datetime("us", "UTC"),
    "endpoint": pl.String,
    "model_name": pl.String,
    "model_version": pl.String,
    "kind": pl.String,
    "feature": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "ks_pvalue": pl.Float64,
    "breached": pl.Boolean,
}


def history_frame(checks: Iterable[EndpointCheck], checked_at: Any) -> pl.DataFrame:
    rows = [row for check in checks for row in history_rows(check, checked_at)]
    return pl.DataFrame(rows, schema=HISTORY_SCHEMA) if rows else pl.DataFrame(schema=HISTORY_SCHEMA)


def drift_series(history: pl.DataFrame) -> pl.DataFrame:
    """``checked_at``, ``endpoint``, ``feature``, ``psi`` from the long history, for plotting."""
    return (
        history.filter((pl.col("kind") == DRIFT_KIND) & (pl.col("metric") == "PSI"))
        .select("checked_at", "endpoint", "feature", pl.col("value").alias("psi"))
        .sort("checked_at")
    )
