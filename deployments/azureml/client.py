"""The one place an ``MLClient`` is made: tests replace :func:`get_ml_client` with a double.

Everything that talks to Azure ML (jobs, registration, endpoints) takes ``client=None`` and asks
this module when none is given, so a test substitutes one function and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from salesrisk.settings import get_settings

if TYPE_CHECKING:
    from azure.ai.ml import MLClient


def get_ml_client() -> MLClient:
    """A client for the workspace named by ``AZURE_ML_*``, authenticated by DefaultAzureCredential
    (environment, managed identity, or ``az login``). Raises MissingSettingError naming the unset
    variable before anything touches the network."""
    subscription, resource_group, workspace = get_settings().require_azure()
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(
        DefaultAzureCredential(),
        subscription_id=subscription,
        resource_group_name=resource_group,
        workspace_name=workspace,
    )


def resolve(client: MLClient | None) -> MLClient:
    """``client`` itself, or the workspace client from the settings (looked up at call time)."""
    return client if client is not None else get_ml_client()
