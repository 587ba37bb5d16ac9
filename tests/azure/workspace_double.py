"""A double of ``MLClient`` (``MagicMock(spec=MLClient)`` with autospecced operations) that plays
an Azure ML workspace: jobs that change state, job downloads laid out as the SDK lays them out,
registered models, and online endpoints whose traffic can only point at deployments that exist.

Autospec makes every call fail the way the real client would if our code called an operation
with a wrong signature; the state rules are the service's documented ones, kept minimal.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock, create_autospec

from azure.ai.ml import MLClient, Output
from azure.ai.ml.entities import CommandJob, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model, PipelineJob
from azure.ai.ml.entities._job.job_service import JobService
from azure.ai.ml.operations import (
    JobOperations,
    ModelOperations,
    OnlineDeploymentOperations,
    OnlineEndpointOperations,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.polling import LROPoller

STUDIO = "https://ml.azure.com/runs/{name}?wsid=/subscriptions/sub/resourcegroups/rg/workspaces/ws"


def poller(result: Any = None, error: Exception | None = None) -> Any:
    done = create_autospec(LROPoller, instance=True)
    if error is not None:
        done.result.side_effect = error
    else:
        done.result.return_value = result
    return done


@dataclass
class JobScript:
    """How the next submitted job behaves: the statuses ``get`` returns in turn, and its files."""

    states: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    log: str = ""
    output_path: str | None = None
    children: list[tuple[str, str, str]] = field(default_factory=list)  # (name, status, log)


class WorkspaceDouble:
    def __init__(self, model_dir: Path | None = None) -> None:
        self.client = MagicMock(spec=MLClient)
        self.client.jobs = create_autospec(JobOperations, instance=True)
        self.client.models = create_autospec(ModelOperations, instance=True)
        self.client.online_endpoints = create_autospec(OnlineEndpointOperations, instance=True)
        self.client.online_deployments = create_autospec(OnlineDeploymentOperations, instance=True)
        self.model_dir = model_dir
        # jobs
        self.scripts: list[JobScript] = []
        self.submitted: list[Any] = []
        self._jobs: dict[str, tuple[JobScript, list[str], str]] = {}
        self.client.jobs.create_or_update.side_effect = self._create_job
        self.client.jobs.get.side_effect = self._get_job
        self.client.jobs.stream.side_effect = self._stream
        self.client.jobs.download.side_effect = self._download
        self.client.jobs.list.side_effect = self._list_jobs
        # models
        self.models: dict[str, list[Model]] = {}
        self.client.models.create_or_update.side_effect = self._register
        self.client.models.download.side_effect = self._download_model
        # endpoints
        self.endpoints: dict[str, ManagedOnlineEndpoint] = {}
        self.deployments: dict[tuple[str, str], ManagedOnlineDeployment] = {}
        self.traffic_history: list[tuple[str, dict[str, int]]] = []
        self.invocations: list[tuple[str, str | None, dict]] = []
        self.broken_versions: set[str] = set()  # deployments of these versions answer 500
        self.failing_deployments: set[str] = set()  # versions whose deployment creation fails
        ops = self.client.online_endpoints
        ops.get.side_effect = self._get_endpoint
        ops.begin_create_or_update.side_effect = self._put_endpoint
        ops.invoke.side_effect = self._invoke
        deps = self.client.online_deployments
        deps.get.side_effect = self._get_deployment
        deps.begin_create_or_update.side_effect = self._put_deployment
        deps.get_logs.side_effect = lambda name, endpoint_name, lines, **_: f"[{endpoint_name}/{name}] container crashed: bad model"
        deps.list.side_effect = lambda endpoint_name, **_: [d for (e, _c), d in self.deployments.items() if e == endpoint_name]

    # --- jobs ------------------------------------------------------------------------------
    def _entity(self, submitted: Any, name: str, status: str, script: JobScript) -> Any:
        services = {"Studio": JobService(endpoint=STUDIO.format(name=name))}
        outputs = {key: Output(type="uri_folder", path=script.output_path) for key in (submitted.outputs or {})}
        if isinstance(submitted, PipelineJob) or getattr(submitted, "type", None) == "pipeline":
            return PipelineJob(name=name, status=status, services=services, outputs=outputs, jobs={})
        return CommandJob(name=name, status=status, services=services, outputs=outputs, command="x", environment="azureml:e:1")

    def _create_job(self, job: Any, **kwargs: Any) -> Any:
        script = self.scripts.pop(0)
        name = f"salesrisk_job_{len(self.submitted) + 1}"
        self.submitted.append(job)
        states = list(script.states)
        self._jobs[name] = (script, states, job)
        return self._entity(job, name, states.pop(0), script)

    def _get_job(self, name: str) -> Any:
        if name not in self._jobs:
            raise ResourceNotFoundError(f"job {name} not found")
        script, states, submitted = self._jobs[name]
        status = states.pop(0) if len(states) > 1 else states[0]
        return self._entity(submitted, name, status, script)

    def _stream(self, name: str) -> None:
        """Like the SDK's: returns when the job is in a terminal state, raises when it failed."""
        from azure.ai.ml.exceptions import ErrorCategory, ErrorTarget, JobException

        script, states, _job = self._jobs[name]
        terminal = ("Completed", "Failed", "Canceled", "NotResponding", "Paused")
        while len(states) > 1 and states[0] not in terminal:
            states.pop(0)
        if states[0] == "Failed":
            raise JobException(message="Exception : job failed", target=ErrorTarget.JOB,
                               no_personal_data_message="failed", error_category=ErrorCategory.SYSTEM_ERROR)

    def _download(self, name: str, *, download_path: Any = ".", output_name: str | None = None, all: bool = False) -> None:
        script = self._script_of(name)
        root = Path(download_path)
        if output_name:  # the SDK's layout: <path>/named-outputs/<output>/...
            target = root / "named-outputs" / output_name
            target.mkdir(parents=True, exist_ok=True)
            (target / "metrics.json").write_text(json.dumps(script.metrics))
            return
        logs = root / "artifacts" / "user_logs"
        logs.mkdir(parents=True, exist_ok=True)
        (root / "artifacts" / "system_logs").mkdir(parents=True, exist_ok=True)
        (root / "artifacts" / "system_logs" / "lifecycler.txt").write_text("system noise\n")
        (logs / "std_log.txt").write_text(script.log)

    def _script_of(self, name: str) -> JobScript:
        for script, _states, _job in self._jobs.values():
            for child, _status, log in script.children:
                if child == name:
                    return JobScript(states=["Failed"], log=log)
        return self._jobs[name][0]

    def _list_jobs(self, *, parent_job_name: str | None = None, **_: Any) -> list[Any]:
        script = self._jobs[parent_job_name][0]
        return [CommandJob(name=n, status=s, display_name=n, command="x", environment="azureml:e:1") for n, s, _ in script.children]

    # --- models ----------------------------------------------------------------------------
    def _register(self, model: Model) -> Model:
        versions = self.models.setdefault(model.name, [])
        stored = copy.deepcopy(model)
        stored.version = str(len(versions) + 1)
        versions.append(stored)
        return stored

    def _download_model(self, name: str, version: str, download_path: Any = ".") -> None:
        import shutil

        if self.model_dir is None:
            raise ResourceNotFoundError(f"model {name}:{version} not found")
        shutil.copytree(self.model_dir, Path(download_path) / name / "model")

    # --- endpoints -------------------------------------------------------------------------
    def _get_endpoint(self, name: str, **_: Any) -> ManagedOnlineEndpoint:
        if name not in self.endpoints:
            raise ResourceNotFoundError(f"endpoint {name} not found")
        return copy.deepcopy(self.endpoints[name])

    def _put_endpoint(self, endpoint: ManagedOnlineEndpoint, **_: Any) -> Any:
        traffic = {k: int(v) for k, v in (endpoint.traffic or {}).items()}
        missing = [colour for colour in traffic if (endpoint.name, colour) not in self.deployments]
        if missing:
            return poller(error=HttpResponseError(f"traffic names deployments that do not exist: {missing}"))
        if traffic and sum(traffic.values()) not in (0, 100):
            return poller(error=HttpResponseError(f"traffic must sum to 100, got {traffic}"))
        stored = copy.deepcopy(endpoint)
        stored.traffic = traffic
        stored._scoring_uri = f"https://{endpoint.name}.westeurope.inference.ml.azure.com/score"
        self.endpoints[endpoint.name] = stored
        self.traffic_history.append((endpoint.name, dict(traffic)))
        return poller(copy.deepcopy(stored))

    def _get_deployment(self, name: str, endpoint_name: str, **_: Any) -> ManagedOnlineDeployment:
        if (endpoint_name, name) not in self.deployments:
            raise ResourceNotFoundError(f"deployment {endpoint_name}/{name} not found")
        return copy.deepcopy(self.deployments[(endpoint_name, name)])

    def _put_deployment(self, deployment: ManagedOnlineDeployment, **_: Any) -> Any:
        if deployment.endpoint_name not in self.endpoints:
            return poller(error=ResourceNotFoundError(f"endpoint {deployment.endpoint_name} not found"))
        version = str(deployment.model).rsplit(":", 1)[-1]
        if version in self.failing_deployments:
            return poller(error=HttpResponseError("deployment failed: ResourceNotReady"))
        self.deployments[(deployment.endpoint_name, deployment.name)] = copy.deepcopy(deployment)
        return poller(copy.deepcopy(deployment))

    def _invoke(self, endpoint_name: str, *, request_file: str | None = None, deployment_name: str | None = None, **_: Any) -> str:
        body = json.loads(Path(request_file).read_text())
        self.invocations.append((endpoint_name, deployment_name, body))
        endpoint = self.endpoints[endpoint_name]
        colour = deployment_name or max(endpoint.traffic, key=endpoint.traffic.get)
        deployment = self.deployments[(endpoint_name, colour)]
        if str(deployment.model).rsplit(":", 1)[-1] in self.broken_versions:
            raise HttpResponseError("(500) upstream request failed: model crashed")
        rows = len(body["input_data"]["data"])
        return json.dumps([0.5] * rows)

    def traffic(self, endpoint_name: str) -> dict[str, int]:
        return dict(self.endpoints[endpoint_name].traffic)
