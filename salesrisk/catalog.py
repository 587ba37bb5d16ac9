"""The runbook's contract in one place: model ids, registered names, metrics, endpoint keys, columns.

Every other module takes names from here so the runbook's vocabulary cannot drift between the
trainers, the flows, the Azure ML job files and the endpoint map.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- lake tables (see docs/data-lake-layout.md) ---------------------------------------------
RISK_EVALUATIONS = "risk_evaluations"
ML_OUTCOMES = "ml_outcomes"
RISK_SNAPSHOTS = "risk_snapshots"
REVENUE_DAILY = "revenue_daily"
ML_TRAINING = "ml_training"
ML_INFERENCE_LOGS = "ml_inference_logs"
TRUTH = "_truth"  # generator-only ground truth, never read by a trainer

# --- training-input columns (runbook section 3) ---------------------------------------------
OPPORTUNITY_FEATURES: tuple[str, ...] = (
    "amount",
    "probability",
    "days_to_close",
    "stage_encoded",
    "industry_encoded",
    "days_since_last_activity",
    "activity_count_30d",
    "stakeholder_count",
)
WIN_PROBABILITY_FEATURES = OPPORTUNITY_FEATURES
WIN_TARGET = "target_win"
IS_CLOSED = "is_closed"
RISK_SCORING_FEATURES = OPPORTUNITY_FEATURES
RISK_TARGET = "target_risk"
INDUSTRY_ID = "industry_id"

TRAJECTORY_ID = "opportunityId"
TRAJECTORY_TIME = "snapshotDate"
TRAJECTORY_FEATURES: tuple[str, ...] = ("risk_score", "activity_count_30d", "days_since_last_activity")
TRAJECTORY_TARGETS: tuple[str, ...] = ("target_risk_30", "target_risk_60", "target_risk_90")
TRAJECTORY_HORIZONS: tuple[int, ...] = (30, 60, 90)

# Accepted (date, value) spellings of the revenue input, normalised to (ds, y) by the trainer.
REVENUE_COLUMN_PAIRS: tuple[tuple[str, str], ...] = (
    ("date", "revenue"),
    ("ds", "y"),
    ("date", "pipeline_value"),
)

ANOMALY_LABEL = "is_anomaly"
IS_SYNTHETIC = "is_synthetic"

# Identifier, date and target columns that ``--features auto`` never uses as features.
NON_FEATURE_COLUMNS: frozenset[str] = frozenset(
    {
        "tenant_id",
        "opportunity_id",
        TRAJECTORY_ID,
        TRAJECTORY_TIME,
        "evaluation_date",
        "snapshot_date",
        "closed_date",
        "partition_date",
        "date",
        "ds",
        "y",
        "outcome",
        "close_amount",
        WIN_TARGET,
        RISK_TARGET,
        IS_CLOSED,
        IS_SYNTHETIC,
        ANOMALY_LABEL,
        *TRAJECTORY_TARGETS,
    }
)


@dataclass(frozen=True)
class ModelSpec:
    """What the runbook says about one model."""

    model_id: str  # trainer module name and prepare --model-id
    registered_name: str
    endpoint_key: str
    metrics: tuple[str, ...]  # exactly the runbook's names, written to metrics.json
    sources: tuple[str, ...]  # the lake tables its preparation reads (and its cache key fingerprints)
    min_rows: int = 0  # below this, preparation tops up with synthetic rows


MODELS: dict[str, ModelSpec] = {
    spec.model_id: spec
    for spec in (
        ModelSpec("risk_scoring", "risk-scoring-global", "risk_scoring_global", ("RMSE", "MAE", "R2"),
                  (RISK_EVALUATIONS, ML_OUTCOMES), 3000),
        ModelSpec("risk_trajectory", "risk-trajectory-lstm", "risk_trajectory_lstm", ("loss", "val_loss", "mae", "val_mae"),
                  (RISK_SNAPSHOTS, ML_OUTCOMES)),
        ModelSpec("win_probability", "win-probability-model", "win_probability", ("Brier", "AUC_ROC"),
                  (RISK_EVALUATIONS, ML_OUTCOMES), 5000),
        ModelSpec("revenue_forecast", "revenue-forecasting-model", "revenue_forecasting", ("MAPE", "RMSE", "MAE"),
                  (REVENUE_DAILY,)),
        ModelSpec("anomaly", "anomaly-detection-isolation-forest", "anomaly", ("F1",), (RISK_EVALUATIONS,)),
    )
}

RISK_SCORING_INDUSTRY_ENDPOINT = "risk_scoring_industry"
ENDPOINT_KEYS: tuple[str, ...] = (
    "risk_scoring_global",
    RISK_SCORING_INDUSTRY_ENDPOINT,
    "risk_trajectory_lstm",
    "win_probability",
    "revenue_forecasting",
    "anomaly",
)


def registered_name(model_id: str, industry_id: str | None = None) -> str:
    """The runbook's registered name; risk scoring per industry is ``risk-scoring-{industry}``."""
    if model_id == "risk_scoring" and industry_id:
        return f"risk-scoring-{industry_id}"
    return MODELS[model_id].registered_name


def endpoint_key(model_id: str, industry_id: str | None = None) -> str:
    if model_id == "risk_scoring" and industry_id:
        return RISK_SCORING_INDUSTRY_ENDPOINT
    return MODELS[model_id].endpoint_key
