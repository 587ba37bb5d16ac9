"""What tasks hand each other: URIs with content fingerprints, never data frames.

A fingerprint in a task's inputs is what makes the cache key change when the data changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataRef:
    uri: str
    fingerprint: str


@dataclass(frozen=True)
class TrainedModel:
    model_id: str
    model_name: str
    output: str  # folder with model/, metrics.json, run.json
    metrics: dict[str, float]
    run_id: str | None
    training_data: DataRef
    params: dict[str, Any] = field(default_factory=dict)
    compute: str = "local"

    @property
    def model_dir(self) -> str:
        return f"{self.output.rstrip('/')}/model"

    @property
    def model_uri(self) -> str:
        """Where the registry finds the model: the run's artifact, else the local folder."""
        return f"runs:/{self.run_id}/model" if self.run_id else self.model_dir


@dataclass(frozen=True)
class ModelSummary:
    """One row of retrain-all's summary table."""

    model_id: str
    registered_name: str
    version: str | None
    metrics: dict[str, float]
    endpoint_key: str
    scoring_url: str | None
    decision: str
