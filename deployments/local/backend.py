"""Blue/green deploys and rollbacks on this machine, with or without the endpoint server running.

A deploy copies the registered version out of the MLflow registry into ``<home>/endpoints/models``
(so the server never needs the registry), puts it on the idle colour at 0% traffic, smoke-tests it
and only then moves the traffic. The smoke test goes over HTTP to the idle colour when this
machine's server is serving this state file, exactly as a client would reach it; when nothing
listens on the server's port it loads the model in this process and predicts the sample (and says
so). A server that is there but slow to answer is waited for; if it still does not answer, the
deploy fails with that reason rather than smoke-testing something else. A failed smoke test puts the idle colour back as
it was, so a later rollback still finds the previous version there.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from deployments import endpoint_map
from deployments.endpoints import DeployError, DeployResult
from deployments.local import keys
from deployments.local import state as st
from salesrisk import catalog
from salesrisk.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas

log = logging.getLogger("salesrisk.deploy")

APPLY_TIMEOUT = 120.0  # seconds the server may take to load a new version (NeuralProphet, torch)
SMOKE_TIMEOUT = 60.0
HEALTH_TIMEOUT = 60.0  # seconds a server that accepts connections may take to answer /health
HEALTH_ATTEMPT_SECONDS = 5.0


class LocalBackend:
    """The ``local`` serving backend (``SALESRISK_SERVING=local``, the default)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.state_path = st.state_path(self.settings)

    # --- the Backend protocol ------------------------------------------------------------
    def deploy(
        self, endpoint_key: str, model_name: str, version: str, *, sample: pandas.DataFrame | None = None
    ) -> DeployResult:
        with st.endpoint_lock(endpoint_key, self.settings):
            return self._deploy(endpoint_key, model_name, version, sample=sample, action="deploy", reason="")

    def rollback(self, endpoint_key: str, to_version: str | None = None, reason: str = "") -> DeployResult:
        reason = reason or "no reason given"
        with st.endpoint_lock(endpoint_key, self.settings):
            ep = st.load(self.state_path).endpoints.get(endpoint_key)
            live = ep.live_colour() if ep else None
            if ep is None or live is None:
                raise DeployError(f"endpoint {endpoint_key!r} has nothing deployed; nothing to roll back")
            idle = st.other(live)
            standby = ep.deployments.get(idle)
            if to_version is None:
                if standby is None:
                    raise DeployError(
                        f"endpoint {endpoint_key!r} has no previous deployment on {idle!r}; "
                        "pass to_version to deploy a registered version instead"
                    )
                return self._switch(endpoint_key, idle, reason)
            if standby is not None and standby.version == to_version and standby.model_name == ep.deployments[live].model_name:
                return self._switch(endpoint_key, idle, reason)
            return self._deploy(
                endpoint_key, ep.deployments[live].model_name, to_version, sample=None, action="rollback", reason=reason
            )

    def current(self, endpoint_key: str) -> DeployResult | None:
        ep = st.load(self.state_path).endpoints.get(endpoint_key)
        live = ep.live_colour() if ep else None
        if ep is None or live is None:
            return None
        return self._result(endpoint_key, ep, live)

    # --- steps ---------------------------------------------------------------------------
    def slots(self, endpoint_key: str) -> list[str]:
        prefix = f"{endpoint_key}{catalog.SLOT_SEPARATOR}"
        return sorted(k for k, ep in st.load(self.state_path).endpoints.items() if k.startswith(prefix) and ep.deployments)

    def scoring_url(self, endpoint_key: str) -> str:
        """Clients score an industry model through its endpoint, which routes rows by industry."""
        public = catalog.split_slot(endpoint_key)[0]
        return f"http://{self.settings.serve_host}:{self.settings.serve_port}/score/{public}"

    def _deploy(
        self,
        key: str,
        model_name: str,
        version: str,
        *,
        sample: pandas.DataFrame | None,
        action: str,
        reason: str,
    ) -> DeployResult:
        model_dir = fetch_model(model_name, version, self.settings)
        new = st.Slot(model_name=model_name, version=version, path=str(model_dir), deployed_at=st.now_iso())
        with st.transaction(self.state_path) as state:
            ep = state.endpoint(key)
            idle = ep.idle_colour()
            before = ep.deployments.get(idle)
            ep.deployments[idle] = new
            ep.traffic[idle] = 0
            staged_revision = state.revision + 1
        try:
            self._smoke_test(key, idle, new, model_dir, sample, staged_revision)
        except Exception as error:
            with st.transaction(self.state_path) as state:
                ep = state.endpoint(key)
                if before is None:
                    ep.deployments.pop(idle, None)
                    ep.traffic.pop(idle, None)
                else:
                    ep.deployments[idle] = before
                ep.record(
                    f"{action}-failed", colour=idle, model_name=model_name, version=version,
                    reason=reason, error=str(error),
                )
            raise DeployError(
                f"{action} of {model_name} v{version} to {key}/{idle} failed its smoke test; "
                f"traffic left where it was: {error}"
            ) from error
        with st.transaction(self.state_path) as state:
            ep = state.endpoint(key)
            live = ep.live_colour()
            previous = ep.deployments[live].version if live and live != idle else None
            ep.traffic = {idle: 100, **({st.other(idle): 0} if st.other(idle) in ep.deployments else {})}
            ep.record(action, colour=idle, model_name=model_name, version=version, previous_version=previous, reason=reason)
            revision = state.revision + 1
        self._wait_applied(revision)
        result = DeployResult(key, model_name, version, idle, self.scoring_url(key), previous, _source_of(model_dir))
        endpoint_map.update({catalog.split_slot(key)[0]: result.scoring_url}, self.settings.endpoint_map)
        log.info("%s: %s v%s now takes 100%% on %s (was v%s)", key, model_name, version, idle, previous)
        return result

    def _switch(self, key: str, colour: str, reason: str) -> DeployResult:
        with st.transaction(self.state_path) as state:
            ep = state.endpoint(key)
            live = ep.live_colour()
            ep.traffic = {c: (100 if c == colour else 0) for c in ep.deployments}
            slot = ep.deployments[colour]
            previous = ep.deployments[live].version if live else None
            ep.record("rollback", colour=colour, model_name=slot.model_name, version=slot.version,
                      previous_version=previous, reason=reason)
            revision = state.revision + 1
        self._wait_applied(revision)
        endpoint_map.update({catalog.split_slot(key)[0]: self.scoring_url(key)}, self.settings.endpoint_map)
        log.info("%s: rolled back to %s v%s on %s (%s)", key, slot.model_name, slot.version, colour, reason)
        return DeployResult(key, slot.model_name, slot.version, colour, self.scoring_url(key), previous,
                            _source_of(Path(slot.path)))

    def _result(self, key: str, ep: st.EndpointState, colour: str) -> DeployResult:
        slot = ep.deployments[colour]
        standby = ep.deployments.get(st.other(colour))
        return DeployResult(key, slot.model_name, slot.version, colour, self.scoring_url(key),
                            standby.version if standby else None, _source_of(Path(slot.path)))

    # --- smoke test ----------------------------------------------------------------------
    def _smoke_test(
        self, key: str, colour: str, slot: st.Slot, model_dir: Path, sample: pandas.DataFrame | None, revision: int
    ) -> None:
        if sample is None:
            sample = input_example(model_dir)
        server = self._server_url()
        if server is None:
            _predict_in_process(model_dir, sample)
            return
        self._wait_applied(revision, required=True)
        body = {"input_data": _split(sample)}
        headers = {"Authorization": f"Bearer {keys.endpoint_key(self.settings)}", "azureml-model-deployment": colour}
        response = httpx.post(f"{server}/score/{key}", json=body, headers=headers, timeout=SMOKE_TIMEOUT)
        if response.status_code != 200:
            raise DeployError(f"smoke request to {key}/{colour} returned HTTP {response.status_code}: {response.text[:500]}")
        served = response.headers.get("x-model-version")
        if served != slot.version:
            raise DeployError(f"smoke request to {key}/{colour} was served by version {served}, expected {slot.version}")
        if not response.json():
            raise DeployError(f"smoke request to {key}/{colour} returned no rows")

    def _server_url(self) -> str | None:
        """This machine's endpoint server, if one is running on this state file; ``None`` when
        nothing listens on its port or it serves another state file (both logged).

        Raises :class:`DeployError` when something listens but does not answer ``/health`` within
        :data:`HEALTH_TIMEOUT`, or answers with something that is not the server's health."""
        url = f"http://{self.settings.serve_host}:{self.settings.serve_port}"
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while True:
            try:
                response = httpx.get(f"{url}/health", timeout=HEALTH_ATTEMPT_SECONDS)
                response.raise_for_status()
                health = response.json()
                break
            except httpx.ConnectError:
                log.info("no endpoint server listens at %s; smoke-testing in this process", url)
                return None
            except httpx.TimeoutException as error:
                if time.monotonic() >= deadline:
                    raise DeployError(
                        f"the endpoint server at {url} accepts connections but did not answer /health "
                        f"within {HEALTH_TIMEOUT:.0f} s ({type(error).__name__}); the deploy cannot be smoke-tested"
                    ) from error
                log.warning("the endpoint server at %s is slow to answer /health; waiting", url)
            except (httpx.HTTPError, ValueError) as error:
                raise DeployError(
                    f"{url}/health did not answer as the endpoint server does ({error}); "
                    "stop what listens there or set SALESRISK_SERVE_PORT"
                ) from error
        if health.get("state_id") != st.state_id(self.state_path):
            log.warning("the server at %s serves another state file; smoke-testing in process", url)
            return None
        return url

    def _wait_applied(self, revision: int, *, required: bool = False) -> None:
        """Wait until a running server has applied ``revision`` (no-op without a server)."""
        try:
            url = self._server_url()
        except DeployError as error:
            if required:
                raise
            log.warning("%s; it will pick the change up when it answers again", error)
            return
        if url is None:
            return
        deadline = time.monotonic() + APPLY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2.0).json().get("revision", -1) >= revision:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        message = f"the endpoint server at {url} did not apply state revision {revision} within {APPLY_TIMEOUT:.0f} s"
        if required:
            raise DeployError(message)
        log.warning("%s; it will pick the change up when it catches up", message)


SOURCE_FILE = ".registered-from"  # in each copied model folder: the registry version's run and source


def fetch_model(model_name: str, version: str, settings: Settings | None = None) -> Path:
    """Copy registered ``model_name`` ``version`` out of the registry once; return the local folder.

    A copy is reused only when it came from the same registration (its run and source, written
    beside it): a store deleted or replaced at the same URI numbers its versions from 1 again, and
    the copy of the old v1, possibly still live on the other colour, must neither be served as the
    new v1 nor overwritten. The new registration then gets a folder of its own, named with its run.
    """
    import mlflow

    from salesrisk import registry

    registry.configure()
    try:
        registered = registry.client().get_model_version(model_name, str(version))
    except Exception as error:
        raise DeployError(f"cannot find {registry.model_uri(model_name, version)} in the registry: {error}") from error
    source = registry.registration_of(registered)
    folder = st.endpoints_dir(settings) / "models" / model_name
    plain = folder / str(version)
    own = folder / f"{version}-{hashlib.blake2b(source.encode(), digest_size=4).hexdigest()}"
    for target in (plain, own):
        if (target / "MLmodel").exists() and _source_of(target) == source:
            return target
    target = own if plain.exists() else plain
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=registry.model_uri(model_name, version), dst_path=str(staging)))
        if not (local / "MLmodel").exists():
            raise DeployError(f"{registry.model_uri(model_name, version)} is not an MLflow model (no MLmodel file)")
        (local / SOURCE_FILE).write_text(source)
        try:
            local.rename(target)
        except OSError:
            if _source_of(target) != source:  # another deploy of the same version raced us and won: use its copy
                raise
    except DeployError:
        raise
    except Exception as error:
        raise DeployError(f"cannot fetch {registry.model_uri(model_name, version)} from the registry: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _source_of(model_dir: Path) -> str | None:
    try:
        return (model_dir / SOURCE_FILE).read_text()
    except OSError:
        return None


def input_example(model_dir: Path) -> pandas.DataFrame:
    """The input example saved with the model: the default smoke-test sample."""
    import pandas as pd
    from mlflow.models import Model

    example = Model.load(str(model_dir)).load_input_example(str(model_dir))
    if example is None:
        raise DeployError(f"{model_dir}: the model has no input example; pass sample= to deploy()")
    return example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)


def _predict_in_process(model_dir: Path, sample: pandas.DataFrame) -> None:
    import mlflow.pyfunc

    output = mlflow.pyfunc.load_model(str(model_dir)).predict(sample)
    if output is None or len(output) == 0:
        raise DeployError(f"{model_dir}: predict returned no rows for the {len(sample)}-row sample")


def _split(sample: pandas.DataFrame) -> dict:
    import json

    split = json.loads(sample.to_json(orient="split", date_format="iso", index=False))
    return {"columns": split["columns"], "data": split["data"]}
