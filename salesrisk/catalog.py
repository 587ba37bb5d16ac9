"""The runbook's contract in one place: model ids, registered names, metrics, endpoint keys, columns.

Every other module takes names from here so the runbook's vocabulary cannot drift between the
trainers, the flows, the Azure ML job files and the endpoint map.
"""

from __future__ import annotations

from dataclasses import dataclass
import re
from typing import Any

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
class Metric:
    """One score a model reports: which way is better, and how much worse a candidate may be
    (in the metric's own units) and still pass the gate, because two fits differ by noise."""

    name: str
    higher_is_better: bool
    tolerance: float = 0.0
    gated: bool = True  # False: reported for information (e.g. anomaly_rate), never judged
    runbook: bool = True  # one of the runbook's metric names (False: an extra, e.g. ECE)


@dataclass(frozen=True)
class FlowParameter:
    """A model's own flow parameter, passed on to its trainer's command line as ``--<name>``."""

    name: str
    type: type
    default: Any = None
    help: str = ""
    job_default: Any = None  # the Azure ML job file's default input (None: ``default``, else unset)


@dataclass(frozen=True)
class ModelSpec:
    """What the runbook says about one model: every layer derives its names and lists from this.

    The model's behaviour (preparation, contract, trainer, plots) is bound to it in
    ``models/specs.py``; Azure ML job files and ``prefect.yaml`` are generated from it.
    """

    model_id: str  # prepare --model-id, metrics.json's owner, the key of MODELS
    registered_name: str
    endpoint_key: str
    scores: tuple[Metric, ...]  # the runbook's metric names with direction and gate tolerance
    sources: tuple[str, ...]  # the lake tables its preparation reads (and its cache key fingerprints)
    min_rows: int = 0  # below this, preparation tops up with synthetic rows
    flow_name: str = ""  # Prefect flow name; its prefect.yaml deployment is ``<flow_name>/default``
    flow_file: str = ""  # flows/<flow_file>.py: the entry point of ``python flows/<flow_file>.py``
    description: str = ""  # first line of the flow's --help
    flow_parameters: tuple[FlowParameter, ...] = ()
    azure_job_file: str = ""  # deployments/azureml/<file>: its Azure ML command job
    azure_training_folder: str = ""  # lake folder of the job file's default training_data path
    performance: str | None = None  # live performance measured by monitoring (None: no outcomes arrive)
    industry_name: str | None = None  # per-industry registered name pattern, with {industry}
    industry_endpoint_key: str | None = None
    # retrain-all starts higher ranks first: with two pipelines at a time, starting the longest fits
    # (NeuralProphet, then the LSTM, measured on the default lake) first keeps the short ones for the end.
    start_rank: int = 0

    @property
    def metrics(self) -> tuple[str, ...]:
        """The runbook's metric names, exactly as written to metrics.json."""
        return tuple(m.name for m in self.scores if m.runbook)

    @property
    def directions(self) -> dict[str, int]:
        """+1 higher is better, -1 lower is better, for the gated metrics."""
        return {m.name: 1 if m.higher_is_better else -1 for m in self.scores if m.gated}

    @property
    def tolerances(self) -> dict[str, float]:
        return {m.name: m.tolerance for m in self.scores if m.gated}

    @property
    def endpoint_keys(self) -> tuple[str, ...]:
        return (self.endpoint_key, *((self.industry_endpoint_key,) if self.industry_endpoint_key else ()))

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.flow_parameters)


def _lower(name: str, tolerance: float = 0.0) -> Metric:
    return Metric(name, higher_is_better=False, tolerance=tolerance)


def _higher(name: str, tolerance: float = 0.0) -> Metric:
    return Metric(name, higher_is_better=True, tolerance=tolerance)


# Tolerances: one number fits every model only for metrics bounded to [0, 1]; RMSE, MAE, MAPE and
# the losses depend on the target's scale, so they are "not worse" (0).
MODELS: dict[str, ModelSpec] = {
    spec.model_id: spec
    for spec in (
        ModelSpec(
            model_id="risk_scoring",
            registered_name="risk-scoring-global",
            endpoint_key="risk_scoring_global",
            scores=(_lower("RMSE"), _lower("MAE"), _higher("R2", 0.005)),
            sources=(RISK_EVALUATIONS, ML_OUTCOMES),
            min_rows=3000,
            flow_name="risk-scoring",
            flow_file="risk_scoring",
            description="Train the global risk-scoring regressor (or one industry's); deploy it if it passes the gate.",
            flow_parameters=(FlowParameter(
                "industry_id", str, help="train one industry only; registers risk-scoring-{industry} for endpoint risk_scoring_industry"
            ),),
            azure_job_file="azml-job-risk-scoring.yaml",
            azure_training_folder=f"{ML_TRAINING}/risk_scoring",
            performance="risk_score",
            industry_name="risk-scoring-{industry}",
            industry_endpoint_key="risk_scoring_industry",
            start_rank=2,
        ),
        ModelSpec(
            model_id="risk_trajectory",
            registered_name="risk-trajectory-lstm",
            endpoint_key="risk_trajectory_lstm",
            scores=(_lower("loss"), _lower("val_loss"), _lower("mae"), _lower("val_mae")),
            sources=(RISK_SNAPSHOTS, ML_OUTCOMES),
            flow_name="risk-trajectory-lstm",
            flow_file="risk_trajectory",
            description="Train the LSTM that forecasts each opportunity's risk at +30/60/90 days; deploy it if it passes the gate.",
            flow_parameters=(FlowParameter(
                "sequence_length", int, 30, "snapshots per opportunity the LSTM reads (shorter histories are padded and masked)"
            ),),
            azure_job_file="azml-job-lstm-trajectory.yaml",
            azure_training_folder=RISK_SNAPSHOTS,
            start_rank=3,
        ),
        ModelSpec(
            model_id="win_probability",
            registered_name="win-probability-model",
            endpoint_key="win_probability",
            scores=(_lower("Brier", 0.002), _higher("AUC_ROC", 0.005), Metric("ECE", higher_is_better=False, tolerance=0.005, runbook=False)),
            sources=(RISK_EVALUATIONS, ML_OUTCOMES),
            min_rows=5000,
            flow_name="win-probability",
            flow_file="win_probability",
            description="Train the calibrated win-probability classifier on closed deals; deploy it if it passes the gate.",
            azure_job_file="azml-job-win-probability.yaml",
            azure_training_folder=f"{ML_TRAINING}/win_probability",
            performance="win_probability",
            start_rank=1,
        ),
        ModelSpec(
            model_id="revenue_forecast",
            registered_name="revenue-forecasting-model",
            endpoint_key="revenue_forecasting",
            scores=(_lower("MAPE"), _lower("RMSE"), _lower("MAE")),
            sources=(REVENUE_DAILY,),
            flow_name="revenue-forecasting",
            flow_file="revenue_forecasting",
            description="Train the NeuralProphet revenue forecast; deploy it if it passes the gate.",
            azure_job_file="azml-job-prophet.yaml",
            azure_training_folder=f"{ML_TRAINING}/revenue_forecasting",
            performance="forecast",
            start_rank=4,
        ),
        ModelSpec(
            model_id="anomaly",
            registered_name="anomaly-detection-isolation-forest",
            endpoint_key="anomaly",
            scores=(_higher("F1", 0.01), Metric("anomaly_rate", higher_is_better=False, gated=False, runbook=False)),
            sources=(RISK_EVALUATIONS,),
            flow_name="anomaly-detection",
            flow_file="anomaly_detection",
            description="Train the IsolationForest anomaly detector; deploy it if it passes the gate.",
            flow_parameters=(
                FlowParameter("param_contamination", float, help="expected share of anomalies (IsolationForest contamination)",
                              job_default=0.1),
                FlowParameter("param_n_estimators", int, help="number of trees (IsolationForest n_estimators)", job_default=100),
            ),
            azure_job_file="azml-job-anomaly.yaml",
            azure_training_folder=f"{ML_TRAINING}/anomaly",
        ),
    )
}


def _endpoint_keys() -> tuple[str, ...]:
    return tuple(key for spec in MODELS.values() for key in spec.endpoint_keys)


ENDPOINT_KEYS: tuple[str, ...] = _endpoint_keys()
RISK_SCORING_INDUSTRY_ENDPOINT = "risk_scoring_industry"


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the catalog (its behaviour is bound in ``models/specs.py``); the endpoint
    keys follow. Returns the spec; registering an id again replaces it."""
    global ENDPOINT_KEYS
    MODELS[spec.model_id] = spec
    ENDPOINT_KEYS = _endpoint_keys()
    return spec


def unregister(model_id: str) -> None:
    global ENDPOINT_KEYS
    MODELS.pop(model_id, None)
    ENDPOINT_KEYS = _endpoint_keys()


def spec_of_endpoint(endpoint_key: str) -> ModelSpec:
    """The model an endpoint key (or an industry slot of one) serves."""
    endpoint_key = split_slot(endpoint_key)[0]
    for spec in MODELS.values():
        if endpoint_key in spec.endpoint_keys:
            return spec
    raise KeyError(f"no model serves endpoint {endpoint_key!r}; endpoints: {', '.join(ENDPOINT_KEYS)}")


def registered_name(model_id: str, industry_id: str | None = None) -> str:
    """The runbook's registered name; risk scoring per industry is ``risk-scoring-{industry}``."""
    spec = MODELS[model_id]
    if industry_id and spec.industry_name:
        return spec.industry_name.format(industry=industry_id)
    return spec.registered_name


def endpoint_key(model_id: str, industry_id: str | None = None) -> str:
    """The endpoint a model serves on; an industry model serves its own slot of the industry
    endpoint (:func:`industry_slot`), which routes each row to its industry's slot."""
    spec = MODELS[model_id]
    if industry_id and spec.industry_endpoint_key:
        return industry_slot(spec.industry_endpoint_key, industry_id)
    return spec.endpoint_key


# --- per-industry slots of an industry endpoint ----------------------------------------------
# ``risk_scoring_industry/software`` is the slot of industry ``software`` on endpoint
# ``risk_scoring_industry``: its own blue/green deployments, traffic and history, so each industry
# model is deployed, gated, monitored and rolled back alone; the endpoint routes rows to the slots.
SLOT_SEPARATOR = "/"
_INDUSTRY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def check_industry_id(industry_id: str) -> str:
    if not _INDUSTRY_ID_PATTERN.match(str(industry_id)):
        raise ValueError(
            f"industry_id={industry_id!r}: expected letters, digits, '-' or '_' (at most 63, starting "
            "with a letter or digit), as it becomes part of a registered model name and an endpoint path"
        )
    return str(industry_id)


def industry_slot(endpoint_key: str, industry_id: str) -> str:
    return f"{endpoint_key}{SLOT_SEPARATOR}{check_industry_id(industry_id)}"


def split_slot(key: str) -> tuple[str, str | None]:
    """``("risk_scoring_industry", "software")`` for a slot key, ``(key, None)`` for an endpoint."""
    endpoint, separator, industry = key.partition(SLOT_SEPARATOR)
    return endpoint, (industry or None) if separator else None


def is_industry_endpoint(endpoint_key: str) -> bool:
    return any(spec.industry_endpoint_key == endpoint_key for spec in MODELS.values())


def fallback_endpoint(endpoint_key: str) -> str:
    """The endpoint whose model answers rows of an industry with no model of its own."""
    return spec_of_endpoint(endpoint_key).endpoint_key


def industry_of_model(model_id: str, model_name: str) -> str | None:
    """``software`` for ``risk-scoring-software`` (the spec's industry name pattern), else None."""
    pattern = MODELS[model_id].industry_name
    if not pattern:
        return None
    prefix, _, suffix = pattern.partition("{industry}")
    if not model_name.startswith(prefix) or not model_name.endswith(suffix) or model_name == MODELS[model_id].registered_name:
        return None
    return model_name[len(prefix) : len(model_name) - len(suffix)] or None


# --- models registered outside this file ----------------------------------------------------
# ``module:function`` entries, comma-separated; each function registers its models (e.g. with
# models.specs.register). Read when this module is imported, so every process of a run (the
# prepare and trainer steps, the endpoint server) knows the same models as the flow that started it.
MODEL_SPECS_VARIABLE = "SALESRISK_MODEL_SPECS"


def load_registered_elsewhere(entries: str | None = None) -> None:
    import importlib
    import os

    text = os.environ.get(MODEL_SPECS_VARIABLE, "") if entries is None else entries
    for entry in filter(None, (part.strip() for part in text.split(","))):
        module, _, function = entry.partition(":")
        if not function:
            raise ValueError(f"{MODEL_SPECS_VARIABLE}={text!r}: expected module:function entries, got {entry!r}")
        getattr(importlib.import_module(module), function)()


load_registered_elsewhere()
