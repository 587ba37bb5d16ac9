"""The ``azureml`` serving backend: one Managed Online Endpoint per runbook key, blue/green.

Same contract as the local backend (:mod:`deployments.endpoints`): the first version goes to
``blue``; a later one goes to the idle colour at 0% traffic, gets a smoke request through
``online_endpoints.invoke`` on that colour alone, and only then takes 100%. Anything failing before
that switch raises :class:`DeployError` with traffic untouched. What served before the switch is
recorded in the endpoint's tags, so a rollback goes back to it even when a later failed deploy
overwrote the idle colour.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployments import endpoint_map
from deployments.azureml import client as azure_client
from deployments.endpoints import COLOURS, DeployError, DeployResult
from salesrisk import catalog, locks
from salesrisk.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas
    from azure.ai.ml import MLClient

log = logging.getLogger("salesrisk.deploy")

ENDPOINT_PREFIX = "salesrisk"
TAG_KEY = "salesrisk.endpoint_key"
TAG_MODEL = "salesrisk.model_name"
TAG_VERSION = "salesrisk.version"
TAG_PREVIOUS_MODEL = "salesrisk.previous_model_name"
TAG_PREVIOUS_VERSION = "salesrisk.previous_version"
TAG_LAST_ACTION = "salesrisk.last_action"
TAG_MEMBER = "salesrisk.industry."  # + industry: the "model:version" the router serves for it
TAG_MEMBER_PREVIOUS = "salesrisk.previous_industry."
TAG_FALLBACK = "salesrisk.fallback"
ROUTER_INDUSTRY = "industry-router"  # the router's registered name: the industry name pattern with this
LOG_LINES = 50
_MODEL_ID = re.compile(r"(?:azureml:)?(?:.*/models/)?(?P<name>[^/:]+)(?::|/versions/)(?P<version>[^/:]+)$")


def endpoint_name(endpoint_key: str, prefix: str = ENDPOINT_PREFIX) -> str:
    """``risk_scoring_global`` -> ``salesrisk-risk-scoring-global`` (Azure: 3-32 characters,
    letters, digits and hyphens, starting with a letter; unique within the Azure region)."""
    name = f"{prefix}-{endpoint_key}".replace("_", "-").lower()
    if not re.fullmatch(r"[a-z][a-z0-9-]{2,31}", name):
        raise DeployError(f"endpoint name {name!r} (from key {endpoint_key!r}) is not a valid Azure ML endpoint name")
    return name


def other(colour: str) -> str:
    return COLOURS[1] if colour == COLOURS[0] else COLOURS[0]


def live_colour(traffic: dict[str, int] | None) -> str | None:
    """The colour taking the traffic (the larger share), or ``None`` when nothing does."""
    shares = {colour: int(share) for colour, share in (traffic or {}).items() if int(share) > 0}
    return max(shares, key=shares.get) if shares else None


def deployed_model(deployment: Any) -> tuple[str, str]:
    """(model name, version) a deployment serves: from its tags, else from its model reference."""
    tags = getattr(deployment, "tags", None) or {}
    if tags.get(TAG_MODEL) and tags.get(TAG_VERSION):
        return tags[TAG_MODEL], str(tags[TAG_VERSION])
    model = getattr(deployment, "model", None)
    reference = model if isinstance(model, str) else f"{getattr(model, 'name', '')}:{getattr(model, 'version', '')}"
    match = _MODEL_ID.search(reference or "")
    if not match:
        raise DeployError(f"cannot tell which model deployment {getattr(deployment, 'name', '?')} serves ({reference!r})")
    return match["name"], match["version"]


def payload(sample: pandas.DataFrame) -> dict[str, Any]:
    """The request body an MLflow model on a managed online endpoint takes: ``input_data`` split."""
    split = json.loads(sample.to_json(orient="split", date_format="iso", index=False))
    return {"input_data": {"columns": split["columns"], "data": split["data"]}}


def check_response(raw: str, rows: int) -> None:
    """A smoke response must be JSON holding predictions: a non-empty list (or ``predictions``).

    Not one per row: a sequence model answers once per entity of the sample (an opportunity's
    snapshots give one trajectory)."""
    try:
        body = json.loads(raw)
    except (TypeError, ValueError) as error:
        raise DeployError(f"smoke request answered with something that is not JSON: {str(raw)[:200]!r}") from error
    predictions = body.get("predictions", body) if isinstance(body, dict) else body
    if not isinstance(predictions, list) or not predictions:
        raise DeployError(f"smoke request sent {rows} rows and got no predictions back: {str(raw)[:200]!r}")


class AzureMLBackend:
    """The ``azureml`` serving backend (``SALESRISK_SERVING=azureml``)."""

    def __init__(self, client: MLClient | None = None, settings: Settings | None = None, prefix: str = ENDPOINT_PREFIX):
        self._client = client
        self.settings = settings or get_settings()
        self.prefix = prefix

    @property
    def client(self) -> MLClient:
        if self._client is None:
            self._client = azure_client.get_ml_client()
        return self._client

    # --- the Backend protocol ------------------------------------------------------------
    def deploy(
        self, endpoint_key: str, model_name: str, version: str, *, sample: pandas.DataFrame | None = None
    ) -> DeployResult:
        if catalog.split_slot(endpoint_key)[1] is not None:
            return self._deploy_member(endpoint_key, model_name, str(version), sample=sample, action="deploy")
        result = self._rollout(endpoint_key, model_name, str(version), sample=sample, action="deploy")
        self._refresh_routers(endpoint_key)
        return result

    def rollback(self, endpoint_key: str, to_version: str | None = None, reason: str = "") -> DeployResult:
        reason = reason or "no reason given"
        if catalog.split_slot(endpoint_key)[1] is not None:
            return self._rollback_member(endpoint_key, to_version, reason)
        name = endpoint_name(endpoint_key, self.prefix)
        endpoint = self._endpoint(name)
        live = live_colour(endpoint.traffic) if endpoint is not None else None
        if endpoint is None or live is None:
            raise DeployError(f"endpoint {endpoint_key!r} ({name}) has nothing deployed; nothing to roll back")
        live_model, live_version = deployed_model(self.client.online_deployments.get(live, name))
        if to_version is not None:
            target = (live_model, str(to_version))
        else:
            tags = endpoint.tags or {}
            if not tags.get(TAG_PREVIOUS_VERSION):
                raise DeployError(
                    f"endpoint {endpoint_key!r} ({name}) has no previous version recorded; "
                    "pass to_version to deploy a registered version instead"
                )
            target = (tags.get(TAG_PREVIOUS_MODEL) or live_model, str(tags[TAG_PREVIOUS_VERSION]))
        if target == (live_model, live_version):
            raise DeployError(f"endpoint {endpoint_key!r} already serves {live_model} v{live_version} on {live}")
        idle = other(live)
        standby = self._deployment(idle, name)
        if standby is not None and deployed_model(standby) == target:
            # The previous version is still on the idle colour: move the traffic back, nothing else.
            log.info("rollback %s to %s v%s on %s: %s", name, *target, idle, reason)
            return self._switch(endpoint, endpoint_key, idle, target, (live_model, live_version), f"rollback: {reason}")
        return self._rollout(endpoint_key, *target, sample=None, action=f"rollback: {reason}")

    def current(self, endpoint_key: str) -> DeployResult | None:
        parent, industry = catalog.split_slot(endpoint_key)
        if industry is not None:
            return self._member(parent, industry)
        name = endpoint_name(endpoint_key, self.prefix)
        endpoint = self._endpoint(name)
        live = live_colour(endpoint.traffic) if endpoint is not None else None
        if endpoint is None or live is None:
            return None
        model_name, version = deployed_model(self.client.online_deployments.get(live, name))
        tags = endpoint.tags or {}
        return DeployResult(endpoint_key, model_name, version, live, endpoint.scoring_uri, tags.get(TAG_PREVIOUS_VERSION))

    def slots(self, endpoint_key: str) -> list[str]:
        endpoint = self._endpoint(endpoint_name(endpoint_key, self.prefix))
        tags = (endpoint.tags or {}) if endpoint is not None else {}
        return sorted(catalog.industry_slot(endpoint_key, k.removeprefix(TAG_MEMBER)) for k in tags if k.startswith(TAG_MEMBER))

    # --- industry slots: members of the endpoint's router model (docs/industry-models.md) ------
    def _member(self, parent: str, industry: str) -> DeployResult | None:
        endpoint = self._endpoint(endpoint_name(parent, self.prefix))
        tags = (endpoint.tags or {}) if endpoint is not None else {}
        member = tags.get(TAG_MEMBER + industry)
        live = live_colour(endpoint.traffic) if endpoint is not None else None
        if not member or live is None:
            return None
        model_name, _, version = member.rpartition(":")
        previous = tags.get(TAG_MEMBER_PREVIOUS + industry, "").rpartition(":")[2] or None
        return DeployResult(catalog.industry_slot(parent, industry), model_name, version, live, endpoint.scoring_uri, previous)

    def _deploy_member(
        self, slot: str, model_name: str, version: str, *, sample: pandas.DataFrame | None, action: str
    ) -> DeployResult:
        """A new router version over the industries now served plus this one, rolled out blue/green
        on the industry endpoint like any model; then the endpoint's tags name the members."""
        parent, industry = catalog.split_slot(slot)
        assert industry is not None
        # one router version at a time: two industries deployed at once must not drop each other
        with locks.held(f"router-{endpoint_name(parent, self.prefix)}"):
            return self._deploy_member_locked(slot, parent, industry, model_name, version, sample=sample, action=action)

    def _deploy_member_locked(
        self, slot: str, parent: str, industry: str, model_name: str, version: str, *,
        sample: pandas.DataFrame | None, action: str,
    ) -> DeployResult:
        fallback_key = catalog.fallback_endpoint(parent)
        fallback = self.current(fallback_key)
        if fallback is None:
            raise DeployError(f"{action} of {model_name} v{version} to {slot}: {fallback_key} serves nothing, and "
                              "the router answers every other industry with it; deploy that model first")
        endpoint = self._endpoint(endpoint_name(parent, self.prefix))
        tags = dict((endpoint.tags or {}) if endpoint is not None else {})
        members = {k.removeprefix(TAG_MEMBER): v.rpartition(":") for k, v in tags.items() if k.startswith(TAG_MEMBER)}
        members = {i: (name, ver) for i, (name, _, ver) in members.items()}
        before = members.get(industry)
        members[industry] = (model_name, version)
        router_name, router_version = self._register_router(parent, members, (fallback.model_name, fallback.version))
        if sample is not None:
            sample = sample.assign(**{catalog.INDUSTRY_ID: industry})
        result = self._rollout(parent, router_name, router_version, sample=sample, action=f"{action} {model_name} v{version}")
        member_tags = {TAG_MEMBER + industry: f"{model_name}:{version}"}
        if before is not None:
            member_tags[TAG_MEMBER_PREVIOUS + industry] = f"{before[0]}:{before[1]}"
        endpoint = self._endpoint(endpoint_name(parent, self.prefix))
        self._set_traffic(endpoint, dict(endpoint.traffic or {}), tags=member_tags)
        return DeployResult(slot, model_name, version, result.colour, result.scoring_url, before[1] if before else None)

    def _refresh_routers(self, fallback_key: str) -> None:
        """A new fallback model reaches the industry endpoints that answer other industries with it."""
        for spec in catalog.MODELS.values():
            if spec.endpoint_key != fallback_key or not spec.industry_endpoint_key:
                continue
            slots = self.slots(spec.industry_endpoint_key)
            if slots:
                live = self.current(slots[0])
                assert live is not None
                self._deploy_member(slots[0], live.model_name, live.version, sample=None,
                                    action=f"new fallback on {fallback_key}: router rebuilt with")

    def _rollback_member(self, slot: str, to_version: str | None, reason: str) -> DeployResult:
        live = self.current(slot)
        if live is None:
            raise DeployError(f"endpoint {slot!r} has nothing deployed; nothing to roll back")
        target = to_version or live.previous_version
        if not target:
            raise DeployError(f"endpoint {slot!r} has no previous version recorded; pass to_version")
        return self._deploy_member(slot, live.model_name, str(target), sample=None, action=f"rollback: {reason}")

    def _register_router(self, parent: str, members: dict[str, tuple[str, str]], fallback: tuple[str, str]) -> tuple[str, str]:
        """Build the router over the members (downloaded from the workspace) and register it."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        from models.industry_router import save_router

        spec = catalog.spec_of_endpoint(parent)
        router_name = catalog.registered_name(spec.model_id, ROUTER_INDUSTRY)
        with tempfile.TemporaryDirectory(prefix="salesrisk-router-") as tmp:
            def fetch(name: str, version: str) -> tuple[str, str, str]:
                target = Path(tmp, "members", name, version)
                self.client.models.download(name, version, download_path=str(target))
                found = sorted(target.rglob("MLmodel"))
                if not found:
                    raise DeployError(f"azureml:{name}:{version} is not an MLflow model (no MLmodel file)")
                return name, version, str(found[0].parent)

            folder = save_router(Path(tmp, "router"), {i: fetch(*m) for i, m in sorted(members.items())}, fetch(*fallback))
            described = "; ".join(f"{i}={n}:{v}" for i, (n, v) in sorted(members.items()))
            registered = self.client.models.create_or_update(Model(
                name=router_name, path=str(folder), type=AssetTypes.MLFLOW_MODEL,
                description=f"routes {catalog.INDUSTRY_ID} to {described}; else {fallback[0]}:{fallback[1]}",
                tags={TAG_FALLBACK: f"{fallback[0]}:{fallback[1]}",
                      **{TAG_MEMBER + i: f"{n}:{v}" for i, (n, v) in members.items()}},
            ))
        log.info("registered %s v%s routing %s", router_name, registered.version, described)
        return router_name, str(registered.version)

    # --- steps ---------------------------------------------------------------------------
    def _rollout(
        self, endpoint_key: str, model_name: str, version: str, *, sample: pandas.DataFrame | None, action: str
    ) -> DeployResult:
        name = endpoint_name(endpoint_key, self.prefix)
        if sample is None:
            sample = self._input_example(model_name, version)
        endpoint = self._endpoint(name) or self._create_endpoint(name, endpoint_key)
        live = live_colour(endpoint.traffic)
        before = deployed_model(self.client.online_deployments.get(live, name)) if live else None
        colour = COLOURS[0] if live is None else other(live)
        where = f"{model_name} v{version} to {endpoint_key}/{colour}"
        kept = f"traffic stays on {live}" if live else "the endpoint takes no traffic"
        log.info("%s %s (%s at 0%% until its smoke request passes)", action, where, name)
        try:
            self.client.online_deployments.begin_create_or_update(
                self._deployment_entity(name, colour, model_name, version)
            ).result()
        except Exception as error:
            raise DeployError(f"{action} of {where} failed to create the deployment; {kept}: {error}\n"
                              f"--- deployment log ---\n{self._log_tail(colour, name)}") from error
        if live is not None:
            endpoint = self._set_traffic(endpoint, {live: 100, colour: 0}, tags={})
        try:
            with tempfile.TemporaryDirectory(prefix="salesrisk-smoke-") as tmp:
                request = Path(tmp, "request.json")
                request.write_text(json.dumps(payload(sample)), encoding="utf-8")
                response = self.client.online_endpoints.invoke(
                    endpoint_name=name, deployment_name=colour, request_file=str(request)
                )
            check_response(response, len(sample))
        except Exception as error:
            raise DeployError(f"{action} of {where} failed its smoke request; {kept}: {error}\n"
                              f"--- deployment log ---\n{self._log_tail(colour, name)}") from error
        return self._switch(endpoint, endpoint_key, colour, (model_name, version), before, action)

    def _switch(
        self,
        endpoint: Any,
        endpoint_key: str,
        colour: str,
        serving: tuple[str, str],
        before: tuple[str, str] | None,
        action: str,
    ) -> DeployResult:
        """Give ``colour`` all the traffic and record what served before it."""
        traffic = {colour: 100, **({other(colour): 0} if other(colour) in (endpoint.traffic or {}) else {})}
        tags = {TAG_LAST_ACTION: f"{action}: {serving[0]} v{serving[1]} on {colour}"[:250]}
        if before is not None:
            tags.update({TAG_PREVIOUS_MODEL: before[0], TAG_PREVIOUS_VERSION: before[1]})
        try:
            endpoint = self._set_traffic(endpoint, traffic, tags=tags)
        except Exception as error:
            raise DeployError(f"moving traffic of {endpoint.name} to {colour} failed; it stays as it was: {error}") from error
        scoring_url = endpoint.scoring_uri
        endpoint_map.update({endpoint_key: scoring_url})
        log.info("%s now serves %s v%s on %s", endpoint.name, serving[0], serving[1], colour)
        return DeployResult(endpoint_key, serving[0], serving[1], colour, scoring_url, before[1] if before else None)

    def _set_traffic(self, endpoint: Any, traffic: dict[str, int], *, tags: dict[str, str]) -> Any:
        endpoint.traffic = traffic
        endpoint.tags = {**(endpoint.tags or {}), **tags}
        return self.client.online_endpoints.begin_create_or_update(endpoint).result()

    def _endpoint(self, name: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.client.online_endpoints.get(name)
        except ResourceNotFoundError:
            return None

    def _deployment(self, colour: str, name: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.client.online_deployments.get(colour, name)
        except ResourceNotFoundError:
            return None

    def _create_endpoint(self, name: str, endpoint_key: str) -> Any:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        log.info("creating managed online endpoint %s for %s", name, endpoint_key)
        entity = ManagedOnlineEndpoint(
            name=name,
            auth_mode="key",
            description=f"salesrisk endpoint {endpoint_key}",
            tags={TAG_KEY: endpoint_key},
        )
        try:
            return self.client.online_endpoints.begin_create_or_update(entity).result()
        except Exception as error:
            raise DeployError(f"creating endpoint {name} for {endpoint_key!r} failed: {error}") from error

    def _deployment_entity(self, name: str, colour: str, model_name: str, version: str) -> Any:
        """A no-code MLflow deployment of the registered version (no scoring script needed)."""
        from azure.ai.ml.entities import ManagedOnlineDeployment

        return ManagedOnlineDeployment(
            name=colour,
            endpoint_name=name,
            model=f"azureml:{model_name}:{version}",
            instance_type=self.settings.deploy_instance_type,
            instance_count=self.settings.deploy_instance_count,
            tags={TAG_MODEL: model_name, TAG_VERSION: str(version)},
        )

    def _input_example(self, model_name: str, version: str) -> pandas.DataFrame:
        """The registered model's MLflow input example: the default smoke-request sample."""
        import pandas as pd
        from mlflow.models import Model

        with tempfile.TemporaryDirectory(prefix="salesrisk-model-") as tmp:
            try:
                self.client.models.download(model_name, version, download_path=tmp)
            except Exception as error:
                raise DeployError(f"cannot download azureml:{model_name}:{version} for its input example: {error}") from error
            found = sorted(Path(tmp).rglob("MLmodel"))
            if not found:
                raise DeployError(f"azureml:{model_name}:{version} is not an MLflow model (no MLmodel file)")
            model_dir = str(found[0].parent)
            example = Model.load(model_dir).load_input_example(model_dir)
        if example is None:
            raise DeployError(f"azureml:{model_name}:{version} has no input example; pass sample= to deploy()")
        return example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)

    def _log_tail(self, colour: str, name: str) -> str:
        try:
            return str(self.client.online_deployments.get_logs(colour, name, LOG_LINES))
        except Exception as error:  # the tail is a courtesy: never hide the deploy's own error
            return f"(no deployment log: {error})"
