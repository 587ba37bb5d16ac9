"""The seam every Azure ML call goes through: operations take ``client=None`` and ask here.

The client itself is made by :func:`salesrisk.workspace.get_ml_client` (storage resolves
``azureml://`` URIs with it too), so a test substitutes that one function and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from salesrisk import workspace

if TYPE_CHECKING:
    from azure.ai.ml import MLClient


def get_ml_client() -> MLClient:
    """The workspace client from the settings (looked up at call time)."""
    return workspace.get_ml_client()


def resolve(client: MLClient | None) -> MLClient:
    """``client`` itself, or the workspace client from the settings."""
    return client if client is not None else workspace.get_ml_client()
