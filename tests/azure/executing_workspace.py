"""An Azure ML workspace that executes what it is given, behind the one client seam.

``ExecutingWorkspace.client`` is ``MagicMock(spec=MLClient)`` with autospecced operations, so a call
with a wrong signature fails as it would against the real client. Behind them:

- **Jobs.** A command job (or a node, as the flows submit it) runs as Azure ML runs it: its
  ``command`` as a local process of this interpreter, with the job's code on ``PYTHONPATH``, each
  data input downloaded to a local folder and passed as that path (Azure ML's download mode),
  each output a local folder uploaded afterwards to the workspace's blob datastore (a container in
  Azurite), and reported as the service reports it: ``azureml://datastores/<store>/paths/...``.
  The job's name is its MLflow run's id (as on Azure ML); the process gets ``MLFLOW_RUN_ID`` and the
  workspace's tracking URI, so what it logs lands in the test's MLflow store. No storage
  credentials reach the process: it sees only mounted paths. A pipeline job runs its steps in
  order, binding ``${{parent.inputs.*}}`` and ``${{parent.jobs.<step>.outputs.*}}``. Status moves
  NotStarted -> Queued -> Running -> Completed | Failed on a background thread; ``jobs.stream``
  waits for it, prints the log, and raises ``JobException`` on Failed like the SDK.
- **Models.** The workspace registry is MLflow's (an Azure ML workspace serves the MLflow registry
  API): ``models.create_or_update`` copies a completed job's output folder into the workspace's
  artifact folder and creates the MLflow version (``run_id`` = the job); a path that is not a
  completed job's MLflow model is refused. Versions registered through MLflow are seen here too.
- **Online endpoints.** A deployment of ``azureml:<name>:<version>`` needs that version to exist;
  its model is loaded (``mlflow.pyfunc``) when the deployment is created, and ``invoke`` answers
  with that model's own predictions, serialised by MLflow's scoring server
  (``{"predictions": [records]}``). Traffic may only name deployments that exist and must sum to 100.

No network call is made except to Azurite on 127.0.0.1.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock, create_autospec

from azure.ai.ml import MLClient
from azure.ai.ml.entities import AzureBlobDatastore, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model
from azure.ai.ml.entities._job.job_service import JobService
from azure.ai.ml.exceptions import ErrorCategory, ErrorTarget, JobException
from azure.ai.ml.operations import (
    DatastoreOperations,
    JobOperations,
    ModelOperations,
    OnlineDeploymentOperations,
    OnlineEndpointOperations,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.polling import LROPoller

from salesrisk import storage, workspace

DATASTORE = "workspaceblobstore"
STUDIO = "https://ml.azure.com/runs/{name}?wsid=/subscriptions/sub/resourcegroups/rg/workspaces/ws"
_BINDING = re.compile(r"\$\{\{(inputs|outputs)\.([A-Za-z0-9_]+)\}\}")
_PARENT = re.compile(r"^\$\{\{parent\.(?:inputs\.(?P<input>\w+)|jobs\.(?P<job>\w+)\.outputs\.(?P<output>\w+)|outputs\.(?P<pout>\w+))\}\}$")
STORAGE_VARIABLES = ("SALESRISK_AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING")


def poller(result: Any = None, error: Exception | None = None) -> Any:
    done = create_autospec(LROPoller, instance=True)
    if error is not None:
        done.result.side_effect = error
    else:
        done.result.return_value = result
    return done


@dataclass
class RunningJob:
    name: str
    spec: dict  # the job as the service receives it (``Job._to_dict()``)
    experiment: str
    kind: str  # command | pipeline
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "NotStarted"
    outputs: dict[str, str] = field(default_factory=dict)  # output -> azureml:// URI
    log: Path | None = None
    children: list[str] = field(default_factory=list)
    parent: str | None = None
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)


class ExecutingWorkspace:
    """``client`` is the double; ``root`` holds job folders and the registry's model copies;
    ``container`` is the Azurite container behind the default datastore."""

    def __init__(self, root: Path, container: str, tracking_uri: str, account: str = "devstoreaccount1") -> None:
        self.root = Path(root)
        self.container = container
        self.account = account
        self.tracking_uri = tracking_uri
        self.client = MagicMock(spec=MLClient)
        self.client.jobs = create_autospec(JobOperations, instance=True)
        self.client.models = create_autospec(ModelOperations, instance=True)
        self.client.datastores = create_autospec(DatastoreOperations, instance=True)
        self.client.online_endpoints = create_autospec(OnlineEndpointOperations, instance=True)
        self.client.online_deployments = create_autospec(OnlineDeploymentOperations, instance=True)
        self.jobs: dict[str, RunningJob] = {}
        self.submitted: list[Any] = []
        self.endpoints: dict[str, ManagedOnlineEndpoint] = {}
        self.deployments: dict[tuple[str, str], ManagedOnlineDeployment] = {}
        self.loaded: dict[tuple[str, str], Any] = {}  # (endpoint, deployment) -> the model it serves
        self._logs: dict[tuple[str, str], str] = {}
        self.invocations: list[tuple[str, str | None, dict]] = []
        self._lock = threading.Lock()
        jobs = self.client.jobs
        jobs.create_or_update.side_effect = self._submit
        jobs.get.side_effect = self._get_job
        jobs.stream.side_effect = self._stream
        jobs.download.side_effect = self._download
        jobs.list.side_effect = self._list_jobs
        self.client.datastores.get.side_effect = self._datastore
        self.client.datastores.get_default.side_effect = lambda **_: self._datastore(DATASTORE)
        models = self.client.models
        models.create_or_update.side_effect = self._register
        models.get.side_effect = self._get_model
        models.download.side_effect = self._download_model
        ops = self.client.online_endpoints
        ops.get.side_effect = self._get_endpoint
        ops.begin_create_or_update.side_effect = self._put_endpoint
        ops.invoke.side_effect = self._invoke
        deps = self.client.online_deployments
        deps.get.side_effect = self._get_deployment
        deps.begin_create_or_update.side_effect = self._put_deployment
        deps.get_logs.side_effect = self._deployment_logs
        deps.list.side_effect = lambda endpoint_name, **_: [d for (e, _c), d in self.deployments.items() if e == endpoint_name]

    # --- datastores --------------------------------------------------------------------------
    def _datastore(self, name: str, **_: Any) -> AzureBlobDatastore:
        if name != DATASTORE:
            raise ResourceNotFoundError(f"datastore {name} not found")
        return AzureBlobDatastore(name=DATASTORE, account_name=self.account, container_name=self.container)

    def datastore_abfs(self, path: str) -> str:
        return f"abfs://{self.container}@{self.account}.dfs.core.windows.net/{path.lstrip('/')}"

    # --- jobs --------------------------------------------------------------------------------
    def _mlflow(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _new_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        """The job's MLflow run; its id is the job's name, as on Azure ML."""
        mlflow = self._mlflow()
        with self._lock:
            found = mlflow.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else mlflow.create_experiment(
                experiment, artifact_location=(self.root / "artifacts" / experiment).as_uri()
            )
        return mlflow.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id

    def _submit(self, job: Any, **_: Any) -> Any:
        from azure.ai.ml.entities import Job

        self.submitted.append(job)
        entity = job if isinstance(job, Job) else job._to_job()
        spec = entity._to_dict()
        kind = spec.get("type", "command")
        if kind not in ("command", "pipeline"):
            raise HttpResponseError(f"job type {kind} is not supported by this workspace")
        experiment = entity.experiment_name or "Default"
        tags = {str(k): str(v) for k, v in (entity.tags or {}).items()}
        name = self._new_run(experiment, entity.display_name or kind, tags)
        running = RunningJob(name, spec, experiment, kind, tags)
        running.outputs = {out: self._output_uri(name, out, value) for out, value in (spec.get("outputs") or {}).items()}
        self.jobs[name] = running
        threading.Thread(target=self._execute, args=(running,), name=f"azureml-job-{name}", daemon=True).start()
        return self._entity(running)

    def _output_uri(self, job: str, output: str, value: Any) -> str:
        path = value.get("path") if isinstance(value, dict) else None
        if path:
            return _strip_asset_prefix(path)
        return workspace.default_output_uri(job, output, DATASTORE)

    def _entity(self, running: RunningJob) -> Any:
        from azure.ai.ml import Output
        from azure.ai.ml.entities import CommandJob, PipelineJob

        services = {"Studio": JobService(endpoint=STUDIO.format(name=running.name))}
        outputs = {name: Output(type="uri_folder", path=uri) for name, uri in running.outputs.items()}
        common = dict(name=running.name, status=running.status, services=services, outputs=outputs,
                      experiment_name=running.experiment, display_name=running.spec.get("display_name"))
        if running.kind == "pipeline":
            return PipelineJob(**common, jobs={})
        return CommandJob(**common, command=running.spec.get("command", "x"), environment="azureml:salesrisk:1")

    def _get_job(self, name: str, **_: Any) -> Any:
        if name not in self.jobs:
            raise ResourceNotFoundError(f"job {name} not found")
        return self._entity(self.jobs[name])

    def _stream(self, name: str) -> None:
        running = self.jobs.get(name)
        if running is None:
            raise ResourceNotFoundError(f"job {name} not found")
        running.done.wait()
        if running.log and running.log.exists():
            sys.stdout.write(running.log.read_text(encoding="utf-8", errors="replace")[-4000:])
        if running.status == "Failed":
            raise JobException(
                message=f"Exception : \n {json.dumps({'error': running.error})} ",
                target=ErrorTarget.JOB,
                no_personal_data_message="Exception raised on failed job.",
                error_category=ErrorCategory.SYSTEM_ERROR,
            )

    def _list_jobs(self, *, parent_job_name: str | None = None, **_: Any) -> list[Any]:
        parent = self.jobs.get(parent_job_name or "")
        return [self._entity(self.jobs[child]) for child in (parent.children if parent else [])]

    def _download(self, name: str, *, download_path: Any = ".", output_name: str | None = None, all: bool = False) -> None:
        running = self.jobs.get(name)
        if running is None:
            raise ResourceNotFoundError(f"job {name} not found")
        root = Path(download_path)
        if output_name is not None:  # the SDK's layout: <path>/named-outputs/<output>/...
            if output_name not in running.outputs:
                raise ResourceNotFoundError(f"job {name} has no output {output_name}")
            self._fetch(running.outputs[output_name], root / "named-outputs" / output_name, "uri_folder")
            return
        logs = root / "artifacts" / "user_logs"
        logs.mkdir(parents=True, exist_ok=True)
        if running.log and running.log.exists():
            shutil.copy(running.log, logs / "std_log.txt")

    # --- running ------------------------------------------------------------------------------
    def _execute(self, running: RunningJob) -> None:
        folder = self.root / "jobs" / running.name
        folder.mkdir(parents=True, exist_ok=True)
        running.log = folder / "std_log.txt"
        try:
            running.status = "Queued"
            running.status = "Running"
            if running.kind == "pipeline":
                self._run_pipeline(running)
            else:
                inputs = {k: _literal_or_input(v) for k, v in (running.spec.get("inputs") or {}).items()}
                self._run_command(running, running.spec, inputs, running.outputs, folder)
            self._finish(running, "Completed")
        except Exception as error:  # the job fails; the flow reads why from its status and log
            running.error = str(error)
            with open(running.log, "a", encoding="utf-8") as log:
                log.write(f"\n{type(error).__name__}: {error}\n")
            self._finish(running, "Failed")

    def _finish(self, running: RunningJob, status: str) -> None:
        self._mlflow().set_terminated(running.name, "FINISHED" if status == "Completed" else "FAILED")
        running.status = status
        running.done.set()

    def _run_command(self, running: RunningJob, spec: dict, inputs: dict[str, Any], outputs: dict[str, str], folder: Path) -> None:
        component = spec.get("component") or spec
        command = component["command"]
        code = component.get("code") or spec.get("code")
        mounts = folder / "inputs"
        values: dict[str, str] = {}
        for name, value in inputs.items():
            if isinstance(value, dict):
                values[name] = str(self._fetch(value["path"], mounts / name, value.get("type", "uri_folder")))
            else:
                values[name] = str(value)
        out_dirs = {name: folder / "outputs" / name for name in outputs}
        for path in out_dirs.values():
            path.mkdir(parents=True, exist_ok=True)

        def bind(match: re.Match) -> str:
            kind, name = match.groups()
            table = values if kind == "inputs" else {k: str(v) for k, v in out_dirs.items()}
            if name not in table:
                raise ValueError(f"command names {kind}.{name}, which the job does not define")
            return shlex.quote(table[name])

        args = shlex.split(_BINDING.sub(bind, command))
        if args and args[0] == "python":
            args[0] = sys.executable
        env = {k: v for k, v in os.environ.items() if k not in STORAGE_VARIABLES}
        env.update({str(k): str(v) for k, v in (component.get("environment_variables") or spec.get("environment_variables") or {}).items()})
        env.update({
            "PYTHONPATH": os.pathsep.join(filter(None, [str(code or ""), env.get("PYTHONPATH", "")])),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_RUN_ID": running.name,
            "AZUREML_RUN_ID": running.name,
            "AZUREML_ARM_SUBSCRIPTION": "sub",
            "AZUREML_ARM_RESOURCEGROUP": "rg",
            "AZUREML_ARM_WORKSPACE_NAME": "ws",
        })
        workdir = folder / "wd"
        workdir.mkdir(exist_ok=True)
        with open(running.log, "a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(args)}\n")
            log.flush()
            done = subprocess.run(args, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"the job's command exited {done.returncode}")
        for name, local in out_dirs.items():
            self._upload(local, outputs[name])

    def _run_pipeline(self, parent: RunningJob) -> None:
        spec = parent.spec
        parent_inputs = {k: _literal_or_input(v) for k, v in (spec.get("inputs") or {}).items()}
        step_outputs: dict[str, dict[str, str]] = {}
        for step, node in spec.get("jobs", {}).items():  # the dsl lists steps in dependency order
            component = node.get("component") or {}
            name = self._new_run(parent.experiment, step, {"azureml.pipeline": parent.name})
            child = RunningJob(name, node, parent.experiment, "command", status="Running", parent=parent.name)
            child.log = self.root / "jobs" / name / "std_log.txt"
            child.log.parent.mkdir(parents=True, exist_ok=True)
            self.jobs[name] = child
            parent.children.append(name)
            inputs: dict[str, Any] = {}
            for key, declared in (component.get("inputs") or {}).items():
                if "default" in declared:
                    inputs[key] = declared["default"]
            for key, value in (node.get("inputs") or {}).items():
                inputs[key] = self._bind_parent(value, parent_inputs, step_outputs)
            outputs: dict[str, str] = {}
            for key, value in (node.get("outputs") or {}).items():
                bound = _PARENT.match(value) if isinstance(value, str) else None
                outputs[key] = parent.outputs[bound["pout"]] if bound and bound["pout"] else workspace.default_output_uri(name, key, DATASTORE)
            child.outputs = outputs
            try:
                self._run_command(child, node, inputs, outputs, child.log.parent)
            except Exception as error:
                child.error = str(error)
                with open(child.log, "a", encoding="utf-8") as log:
                    log.write(f"\n{type(error).__name__}: {error}\n")
                self._finish(child, "Failed")
                raise RuntimeError(f"pipeline step {step} failed: {error}") from error
            self._finish(child, "Completed")
            step_outputs[step] = outputs

    def _bind_parent(self, value: Any, parent_inputs: dict[str, Any], step_outputs: dict[str, dict[str, str]]) -> Any:
        path = value.get("path") if isinstance(value, dict) else value
        bound = _PARENT.match(path) if isinstance(path, str) else None
        if not bound:
            return _literal_or_input(value)
        if bound["input"]:
            return parent_inputs[bound["input"]]
        if bound["job"]:
            return {"type": "uri_folder", "path": step_outputs[bound["job"]][bound["output"]]}
        raise ValueError(f"a step input cannot bind {path}")

    # --- data movement ----------------------------------------------------------------------
    def _abfs(self, uri: str) -> str:
        uri = _strip_asset_prefix(uri)
        if uri.startswith("abfss://"):
            uri = "abfs://" + uri.removeprefix("abfss://")
        if uri.startswith(workspace.SCHEME):
            uri = workspace.to_abfs(uri, self.client)
        return uri

    def _fetch(self, uri: str, target: Path, kind: str) -> Path:
        """Download an input (``download`` mode) and return the path the command sees."""
        uri = _strip_asset_prefix(uri)
        if re.match(r"^azureml:[^/]", uri):
            raise ValueError(f"{uri}: data assets are not registered in this workspace")
        target.mkdir(parents=True, exist_ok=True)
        if "://" not in uri:  # a local path: Azure ML uploads it at submission
            source = Path(uri)
            if source.is_file():
                shutil.copy(source, target / source.name)
                return target / source.name
            shutil.copytree(source, target, dirs_exist_ok=True)
            return target
        fs, path = storage.filesystem(self._abfs(uri))
        if not fs.exists(path):
            raise FileNotFoundError(f"input {uri} does not exist")
        if fs.isfile(path):
            local = target / posixpath_name(path)
            fs.get(path, str(local))
            return local
        for remote in fs.find(path):
            local = target / os.path.relpath(remote, path)
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get(remote, str(local))
        return target

    def _upload(self, local: Path, uri: str) -> None:
        fs, path = storage.filesystem(self._abfs(uri))
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            fs.pipe_file(f"{path.rstrip('/')}/{file.relative_to(local).as_posix()}", file.read_bytes())

    # --- models -------------------------------------------------------------------------------
    def _register(self, model: Model, **_: Any) -> Model:
        match = re.match(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<output>[^/]+)/paths/(?P<path>.*)$", str(model.path))
        if not match and Path(str(model.path)).is_dir():  # a local folder: the SDK uploads it
            return self._register_folder(model)
        if not match:
            raise HttpResponseError(f"model path {model.path}: this workspace registers job outputs only")
        running = self.jobs.get(match["job"])
        if running is None or running.status != "Completed":
            raise HttpResponseError(f"model path {model.path}: job {match['job']} did not complete")
        copy_to = self.root / "registry" / model.name / uuid.uuid4().hex
        try:
            self._fetch(f"{running.outputs[match['output']].rstrip('/')}/{match['path'].strip('/')}", copy_to, "uri_folder")
        except (KeyError, FileNotFoundError) as error:
            raise HttpResponseError(f"model path {model.path} holds no MLflow model: {error}") from error
        if not (copy_to / "MLmodel").exists():
            raise HttpResponseError(f"model path {model.path} holds no MLflow model (no MLmodel file)")
        return self._store_version(model, copy_to, run_id=match["job"])

    def _register_folder(self, model: Model) -> Model:
        if not (Path(str(model.path)) / "MLmodel").exists():
            raise HttpResponseError(f"model path {model.path} holds no MLflow model (no MLmodel file)")
        copy_to = self.root / "registry" / model.name / uuid.uuid4().hex
        shutil.copytree(str(model.path), copy_to)
        return self._store_version(model, copy_to)

    def _store_version(self, model: Model, folder: Path, run_id: str | None = None) -> Model:
        """A new version of ``model.name`` in the workspace's registry, its files in ``folder``."""
        mlflow = self._mlflow()
        with self._lock:
            try:
                mlflow.get_registered_model(model.name)
            except Exception:
                mlflow.create_registered_model(model.name)
        version = mlflow.create_model_version(
            model.name, str(folder), run_id=run_id, tags={str(k): str(v) for k, v in (model.tags or {}).items()},
            description=model.description,
        )
        stored = copy.deepcopy(model)
        stored.version = str(version.version)
        return stored

    def _version(self, name: str, version: str) -> Any:
        try:
            return self._mlflow().get_model_version(name, str(version))
        except Exception as error:
            raise ResourceNotFoundError(f"model {name}:{version} not found") from error

    def _get_model(self, name: str, version: str | None = None, label: str | None = None, **_: Any) -> Model:
        found = self._version(name, str(version))
        return Model(name=name, version=str(found.version), path=found.source, type="mlflow_model", tags=found.tags)

    def _download_model(self, name: str, version: str, download_path: Any = ".", **_: Any) -> None:
        import mlflow

        self._version(name, version)
        target = Path(download_path) / name / "model"
        target.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(target),
                                            tracking_uri=self.tracking_uri)

    # --- endpoints ----------------------------------------------------------------------------
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
        stored._provisioning_state = "Succeeded"
        stored._scoring_uri = f"https://{endpoint.name}.westeurope.inference.ml.azure.com/score"
        self.endpoints[endpoint.name] = stored
        return poller(copy.deepcopy(stored))

    def _get_deployment(self, name: str, endpoint_name: str, **_: Any) -> ManagedOnlineDeployment:
        if (endpoint_name, name) not in self.deployments:
            raise ResourceNotFoundError(f"deployment {endpoint_name}/{name} not found")
        return copy.deepcopy(self.deployments[(endpoint_name, name)])

    def _put_deployment(self, deployment: ManagedOnlineDeployment, **_: Any) -> Any:
        import mlflow.pyfunc

        if deployment.endpoint_name not in self.endpoints:
            return poller(error=ResourceNotFoundError(f"endpoint {deployment.endpoint_name} not found"))
        reference = re.match(r"^azureml:(?P<name>[^:]+):(?P<version>[^:]+)$", str(deployment.model))
        if not reference:
            return poller(error=HttpResponseError(f"deployment model {deployment.model!r}: expected azureml:<name>:<version>"))
        try:
            self._version(reference["name"], reference["version"])
        except ResourceNotFoundError as error:
            return poller(error=error)
        key = (deployment.endpoint_name, deployment.name)
        try:
            loaded = mlflow.pyfunc.load_model(f"models:/{reference['name']}/{reference['version']}")
        except Exception as error:
            self._logs[key] = f"model failed to load: {error}"
            return poller(error=HttpResponseError(f"deployment {key} failed: the container could not load the model"))
        stored = copy.deepcopy(deployment)
        stored._provisioning_state = "Succeeded"
        self.deployments[key] = stored
        self.loaded[key] = loaded
        self._logs[key] = f"loaded {deployment.model}"
        return poller(copy.deepcopy(stored))

    def _deployment_logs(self, name: str, endpoint_name: str, lines: int, **_: Any) -> str:
        return self._logs.get((endpoint_name, name), "")

    def _invoke(self, endpoint_name: str, *, request_file: str | None = None, deployment_name: str | None = None, **_: Any) -> str:
        import io

        import pandas as pd
        from mlflow.pyfunc.scoring_server import predictions_to_json

        if endpoint_name not in self.endpoints:
            raise ResourceNotFoundError(f"endpoint {endpoint_name} not found")
        body = json.loads(Path(request_file).read_text())
        self.invocations.append((endpoint_name, deployment_name, body))
        traffic = self.endpoints[endpoint_name].traffic or {}
        colour = deployment_name or max(traffic, key=traffic.get, default=None)
        if colour is None or (endpoint_name, colour) not in self.loaded:
            raise HttpResponseError(f"(404) endpoint {endpoint_name} has no deployment {colour}")
        data = body["input_data"]
        frame = pd.DataFrame(data["data"], columns=data["columns"])
        try:
            predictions = self.loaded[(endpoint_name, colour)].predict(frame)
        except Exception as error:
            raise HttpResponseError(f"(500) the model failed to score: {error}") from error
        answer = io.StringIO()
        predictions_to_json(predictions, answer)  # as MLflow's scoring server writes it
        return answer.getvalue()


def posixpath_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _strip_asset_prefix(uri: str) -> str:
    """The SDK writes a storage URI as ``azureml:abfss://...``; the service reads the URI."""
    if uri.startswith("azureml:") and not uri.startswith("azureml://") and "://" in uri:
        return uri.removeprefix("azureml:")
    return uri


def _literal_or_input(value: Any) -> Any:
    if isinstance(value, dict) and "path" in value:
        return {"type": value.get("type", "uri_folder"), "path": value["path"]}
    return value
