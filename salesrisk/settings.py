"""One typed settings object, read from the environment.

Defaults need nothing, so a fresh clone runs on one laptop. Azure settings are optional until an
Azure backend is asked for; then :meth:`Settings.require_azure` names the missing variable.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class MissingSettingError(RuntimeError):
    """An Azure backend was asked for but one of its environment variables is unset."""


class InvalidSettingError(MissingSettingError):
    """An environment variable holds a value its setting cannot take (a subclass, so every entry
    point that reports a missing setting as bad input reports this one the same way)."""


DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # `make ui` and the README's `mlflow ui` serve here


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every knob the project reads, with the environment variable that sets it."""

    # No populate_by_name: it would also read a field from an env var named like the field
    # itself, e.g. `home` from $HOME.
    model_config = SettingsConfigDict(extra="ignore", frozen=True)  # shared by every caller (get_settings)

    lake: str = Field("./lake", validation_alias=_env("SALESRISK_LAKE"))
    compute: Literal["local", "azureml"] = Field("local", validation_alias=_env("SALESRISK_COMPUTE"))
    serving: Literal["local", "azureml"] = Field("local", validation_alias=_env("SALESRISK_SERVING"))
    # local steps fork from one preloaded interpreter (deployments/preload.py); false: fresh processes
    preload_steps: bool = Field(True, validation_alias=_env("SALESRISK_PRELOAD_STEPS"))
    # the Prefect API an ad hoc flow run starts stays up this long idle for the next run (flows/api_server.py); 0: it stops with its run
    local_api_idle_seconds: float = Field(300.0, ge=0, validation_alias=_env("SALESRISK_LOCAL_API_IDLE_SECONDS"))
    home: Path = Field(Path("./.salesrisk"), validation_alias=_env("SALESRISK_HOME"))
    serve_host: str = Field("127.0.0.1", validation_alias=_env("SALESRISK_SERVE_HOST"))
    serve_port: int = Field(8765, validation_alias=_env("SALESRISK_SERVE_PORT"))
    serve_max_body_mb: float = Field(16.0, gt=0, validation_alias=_env("SALESRISK_SERVE_MAX_BODY_MB"))
    serve_max_rows: int = Field(10_000, ge=1, validation_alias=_env("SALESRISK_SERVE_MAX_ROWS"))
    endpoint_key: SecretStr | None = Field(None, validation_alias=_env("SALESRISK_ENDPOINT_KEY"))
    endpoint_map: Path = Field(
        Path("config/endpoints.yaml"), validation_alias=_env("SALESRISK_ENDPOINT_MAP")
    )
    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db", validation_alias=_env("MLFLOW_TRACKING_URI")
    )
    # Where a person opens MLflow (`make ui` serves it there): the base of the absolute links in
    # the flows' artifacts. A remote tracking server is its own UI, so its URI is the default then.
    mlflow_ui_url: str | None = Field(None, validation_alias=_env("SALESRISK_MLFLOW_UI_URL"))
    azure_storage_connection_string: SecretStr | None = Field(
        None,
        validation_alias=_env(
            "SALESRISK_AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING"
        ),
    )
    azure_ml_subscription_id: str | None = Field(
        None, validation_alias=_env("AZURE_ML_SUBSCRIPTION_ID")
    )
    azure_ml_resource_group: str | None = Field(None, validation_alias=_env("AZURE_ML_RESOURCE_GROUP"))
    azure_ml_workspace_name: str | None = Field(None, validation_alias=_env("AZURE_ML_WORKSPACE_NAME"))
    azure_ml_compute: str = Field("cpu-cluster", validation_alias=_env("AZURE_ML_COMPUTE"))
    # retrain-all's fan-out on Azure ML: jobs in flight at once (the cluster's nodes, not this machine's cores)
    azure_ml_max_concurrent_jobs: int = Field(8, ge=1, validation_alias=_env("AZURE_ML_MAX_CONCURRENT_JOBS"))
    # retrain-all trains an industry's own model only with at least this many closed deals (won and
    # lost together) in its training data; 600 is met by five of the default lake's eight industries.
    industry_min_closed_deals: int = Field(600, ge=1, validation_alias=_env("SALESRISK_INDUSTRY_MIN_CLOSED_DEALS"))
    deploy_instance_type: str = Field("Standard_DS2_v2", validation_alias=_env("DEPLOY_INSTANCE_TYPE"))
    deploy_instance_count: int = Field(1, ge=1, validation_alias=_env("DEPLOY_INSTANCE_COUNT"))
    # --- monitor-models (docs/model-monitoring.md). The defaults are the "no better than a coin"
    # lines: a constant 0.5 forecast has Brier 0.25, AUC 0.5 and RMSE 0.5 against 0/1 outcomes.
    monitor_psi_threshold: float = Field(0.2, gt=0, validation_alias=_env("SALESRISK_MONITOR_PSI_THRESHOLD"))
    monitor_ks_pvalue: float = Field(0.01, gt=0, lt=1, validation_alias=_env("SALESRISK_MONITOR_KS_PVALUE"))
    monitor_brier_max: float = Field(0.25, gt=0, validation_alias=_env("SALESRISK_MONITOR_BRIER_MAX"))
    monitor_auc_min: float = Field(0.55, ge=0, le=1, validation_alias=_env("SALESRISK_MONITOR_AUC_MIN"))
    monitor_risk_rmse_max: float = Field(0.5, gt=0, validation_alias=_env("SALESRISK_MONITOR_RISK_RMSE_MAX"))
    monitor_mape_max: float = Field(25.0, gt=0, validation_alias=_env("SALESRISK_MONITOR_MAPE_MAX"))
    monitor_window_days: int = Field(7, ge=1, validation_alias=_env("SALESRISK_MONITOR_WINDOW_DAYS"))
    # how far back logged predictions are matched with outcomes that arrived since (deals take weeks)
    monitor_outcome_days: int = Field(120, ge=1, validation_alias=_env("SALESRISK_MONITOR_OUTCOME_DAYS"))
    monitor_min_rows: int = Field(100, ge=1, validation_alias=_env("SALESRISK_MONITOR_MIN_ROWS"))
    # JSON: model id or endpoint key -> none | retrain | rollback, e.g. {"win_probability": "retrain"}
    monitor_actions: dict[str, Literal["none", "retrain", "rollback"]] = Field(
        default_factory=dict, validation_alias=_env("SALESRISK_MONITOR_ACTIONS")
    )

    @property
    def mlflow_ui(self) -> str:
        """The MLflow UI's address, without a trailing slash."""
        if self.mlflow_ui_url:
            return self.mlflow_ui_url.rstrip("/")
        if self.mlflow_tracking_uri.startswith(("http://", "https://")):
            return self.mlflow_tracking_uri.rstrip("/")
        return DEFAULT_MLFLOW_UI

    def require_azure(self) -> tuple[str, str, str]:
        """Return (subscription, resource group, workspace) or name the first missing variable."""
        values = {
            "AZURE_ML_SUBSCRIPTION_ID": self.azure_ml_subscription_id,
            "AZURE_ML_RESOURCE_GROUP": self.azure_ml_resource_group,
            "AZURE_ML_WORKSPACE_NAME": self.azure_ml_workspace_name,
        }
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise MissingSettingError(
                f"Azure ML backend requested but {', '.join(missing)} is not set; "
                "export it (see docs/runbook.md) or use SALESRISK_COMPUTE=local"
            )
        return tuple(values.values())  # type: ignore[return-value]


_SECRET_VARIABLES = {"SALESRISK_ENDPOINT_KEY", "SALESRISK_AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING"}


def get_settings() -> Settings:
    """The settings of the environment as it is now: read again whenever a variable changed (tests
    and flows set them), else the object already read. Settings come from the environment only, so
    an equal environment gives equal settings; reading them costs about 10 ms, and one
    retrain-all asks for them hundreds of times."""
    return _settings_for(tuple(sorted(os.environ.items())))


@functools.lru_cache(maxsize=16)
def _settings_for(environment: tuple[tuple[str, str], ...]) -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise InvalidSettingError(_explain(error)) from None


def _explain(error: ValidationError) -> str:
    """One line per bad variable: its name, the value given and what it takes (never a secret)."""
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"])
        secret = name in _SECRET_VARIABLES
        given = "(hidden)" if secret else repr(problem.get("input"))
        lines.append(f"environment variable {name}={given}: {problem['msg']}")
    return "bad setting: " + "; ".join(lines)
