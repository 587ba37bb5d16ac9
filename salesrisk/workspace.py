"""The Azure ML workspace as storage sees it: the one place an ``MLClient`` is made, and where an
``azureml://`` URI (what the service reports for a job's output) really is.

Tests replace :func:`get_ml_client` with a double; ``deployments.azureml.client`` asks this module
too, so jobs, registration, endpoints and storage all meet the same workspace.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from salesrisk.settings import get_settings

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

SCHEME = "azureml://"
# azureml://datastores/<store>/paths/<path>, optionally with the long workspace prefix
# azureml://subscriptions/<s>/resourcegroups/<rg>/workspaces/<ws>/datastores/<store>/paths/<path>
_DATASTORE_URI = re.compile(
    r"^azureml://(?:subscriptions/[^/]+/resource[gG]roups/[^/]+/(?:providers/Microsoft\.MachineLearningServices/)?workspaces/[^/]+/)?"
    r"datastores/(?P<store>[^/]+)/paths/?(?P<path>.*)$"
)
_JOB_URI = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<output>[^/]+)(?:/paths/?(?P<path>.*))?$")


class WorkspaceURIError(ValueError):
    """An ``azureml://`` URI that does not name a datastore path or a job output."""


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


def is_workspace_uri(uri: str) -> bool:
    return uri.startswith(SCHEME)


def default_output_uri(job_name: str, output_name: str, datastore: str) -> str:
    """Where Azure ML writes an output given no path (its documented default)."""
    return f"azureml://datastores/{datastore}/paths/azureml/{job_name}/{output_name}/"


def to_abfs(uri: str, client: MLClient | None = None) -> str:
    """The ``abfs://<container>@<account>.dfs.<suffix>/<path>`` an ``azureml://`` URI points at:
    a job output is looked up on its job, a datastore path through the datastore's account and
    container."""
    client = client or get_ml_client()
    job = _JOB_URI.match(uri)
    if job:
        uri = _job_output_uri(client, job["job"], job["output"], job["path"] or "")
    store = _DATASTORE_URI.match(uri)
    if not store:
        raise WorkspaceURIError(
            f"{uri}: expected azureml://datastores/<store>/paths/<path> or "
            "azureml://jobs/<job>/outputs/<output>/paths/<path>"
        )
    datastore = client.datastores.get(store["store"])
    container = getattr(datastore, "container_name", None) or getattr(datastore, "filesystem", None)
    account = getattr(datastore, "account_name", None)
    if not container or not account:
        raise WorkspaceURIError(f"{uri}: datastore {store['store']} is not on Azure Blob or ADLS Gen2 storage")
    suffix = getattr(datastore, "endpoint", None) or "core.windows.net"
    return f"abfs://{container}@{account}.dfs.{suffix}/{store['path']}"


def _job_output_uri(client: Any, job_name: str, output_name: str, path: str) -> str:
    job = client.jobs.get(job_name)
    output = (getattr(job, "outputs", None) or {}).get(output_name)
    if output is None:
        raise WorkspaceURIError(f"azureml://jobs/{job_name}/outputs/{output_name}: job {job_name} has no output {output_name}")
    root = getattr(output, "path", None)
    if not (isinstance(root, str) and root.startswith(SCHEME) and not root.startswith("azureml://jobs/")):
        root = default_output_uri(job_name, output_name, client.datastores.get_default().name)
    return root.rstrip("/") + "/" + path.lstrip("/")
