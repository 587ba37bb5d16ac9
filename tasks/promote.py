"""Register and deploy, run together in one Prefect transaction by the flows.

When deploy fails, the registration's rollback hook removes the version it created, so nothing is
left half-promoted and the endpoint keeps serving what it served before. Both retry transient errors
inside their one task attempt (``policies.with_retries``), never as Prefect task retries.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.transactions import Transaction

from deployments import endpoints
from models import gate
from salesrisk import locks, registry
from tasks.policies import ml_code_fingerprint, with_retries
from tasks.refs import TrainedModel


def version_tags(trained: TrainedModel, decision: gate.GateDecision) -> dict[str, Any]:
    tags: dict[str, Any] = {
        "model_id": trained.model_id,
        "data_fingerprint": trained.training_data.fingerprint,
        "training_data": trained.training_data.uri,
        "code_version": ml_code_fingerprint(),
        "gate_promote": decision.promote,
        "gate_reason": decision.reason,
    }
    tags.update({f"param.{k}": v for k, v in trained.params.items()})
    tags.update({f"metric.{k}": round(v, 6) for k, v in trained.metrics.items()})
    tags.update({f"gate.candidate.{k}": round(v, 6) for k, v in decision.candidate.items()})
    tags.update({f"gate.champion.{k}": round(v, 6) for k, v in (decision.champion or {}).items()})
    if decision.baseline_name:  # an industry model's decision against the global model
        tags["gate.baseline"] = decision.baseline_name
        tags.update({f"gate.baseline.{k}": round(v, 6) for k, v in (decision.baseline or {}).items()})
        tags.update({f"gate.vs_baseline.{k}": round(v, 6) for k, v in (decision.candidate_vs_baseline or {}).items()})
    return tags


# Set once, when a version is created: which flow run created it. A retried register (the
# registry made the version but its answer was lost) then knows the version is its own to undo.
CREATED_BY = "created_by_flow_run"


def existing_version(name: str, run_id: str | None) -> tuple[str, str | None] | None:
    """A rerun from the cache must not register the same run twice: (version, creating flow run)."""
    if run_id is None:
        return None
    found = registry.client().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if not found:
        return None
    return str(found[0].version), (found[0].tags or {}).get(CREATED_BY)


def this_flow_run() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def register_new(trained: TrainedModel, tags: dict[str, Any]) -> str:
    """A local run's model goes to the MLflow registry; an Azure ML job's to its workspace."""
    creator = this_flow_run()
    tags = {**tags, **({CREATED_BY: creator} if creator else {})}
    if trained.compute == "azureml":
        from deployments.azureml.registration import register_job_model

        return register_job_model(trained.model_name, trained.run_id or "", metrics=trained.metrics, tags=tags)
    return registry.register_run_model(trained.run_id or "", trained.model_name, tags=tags)


def register_or_find(trained: TrainedModel, tags: dict[str, Any]) -> tuple[str, bool]:
    """The run's version and whether this flow run created it (an earlier attempt counts)."""
    logger = get_run_logger()
    # One registration per name at a time: two runs holding the same trained run (the second took
    # the first's cached result) must not both find it unregistered and register it twice.
    with locks.held(f"register-{trained.model_name}"):
        found = None if trained.compute == "azureml" else existing_version(trained.model_name, trained.run_id)
        if found is None:
            version = register_new(trained, tags)
            logger.info("registered %s version %s", trained.model_name, version)
            created = True
        else:
            version, creator = found
            # The version carries the decision it was created with, for good; this run's decision
            # is in its gate artifact (and in the ledger, if it moves the champion).
            undecided = {k: v for k, v in tags.items() if not k.startswith("gate")}
            registry.add_missing_version_tags(trained.model_name, version, undecided)
            created = creator is not None and creator == this_flow_run()
            logger.info("%s: run already registered as version %s%s", trained.model_name, version,
                        " by an earlier attempt of this flow run" if created else "")
    return version, created


def register_version(trained: TrainedModel, decision: gate.GateDecision) -> str:
    """The body of :func:`register` (in a worker thread, inside the task's transaction)."""
    local = trained.compute != "azureml"  # aliases live in the MLflow registry the flow writes to
    challenger = registry.alias_version(trained.model_name, registry.CHALLENGER) if local else None
    version, created = with_retries(register_or_find, trained, version_tags(trained, decision))
    if created and local:
        with_retries(registry.set_alias, trained.model_name, registry.CHALLENGER, version)
    txn = Transaction.get_active()
    if txn is not None:
        txn.set("registered", {
            "name": trained.model_name, "version": version, "created": created, "local": local,
            "challenger_before": challenger, "reason": decision.reason, "metrics": dict(trained.metrics),
        })
    return version


# register and deploy retry inside their one attempt (see policies.with_retries), not as Prefect
# task retries, because the flows run them together in one transaction. Their bodies run in a
# worker thread (with the task's context, so its transaction too): a registry call, a model
# download or an in-process smoke test would otherwise hold up every other model's pipeline on
# the flow's event loop.
@task(name="register", task_run_name="register {trained.model_name}", cache_policy=NO_CACHE)
async def register(trained: TrainedModel, decision: gate.GateDecision) -> str:
    return await asyncio.to_thread(register_version, trained, decision)


@register.on_rollback
def _unregister(txn: Transaction) -> None:
    """Deploy failed after registration: remove the version this run created, keep older ones, and
    give ``challenger`` back to the candidate it named before."""
    registered = txn.get("registered", None)
    if registered and registered["created"]:
        registry.delete_version(registered["name"], registered["version"])
        if registered.get("local"):
            registry.restore_alias(registered["name"], registry.CHALLENGER, registered.get("challenger_before"))


def record_serving(result: endpoints.DeployResult, action: str, reason: str | None = None,
                   metrics: dict[str, float] | None = None) -> registry.LedgerEntry | None:
    """Move ``champion`` to what the endpoint now serves and append the change to the ledger.

    Called after traffic moved, so it never raises: the endpoint already serves the version, and
    failing here would undo a registration that is live. A failure is logged as an error instead,
    as is a served copy that came from a replaced store (its version number now names another model).
    """
    logger = get_run_logger()
    try:
        here = registry.registration(result.model_name, result.version) if result.registration is not None else None
        if here is not None and here != result.registration:
            logger.error(
                "%s serves a copy of %s v%s made from another registry store (%s); this store's v%s is a "
                "different model (%s). The champion alias and ledger were left as they were: deploy a "
                "version of this store to give the endpoint a champion again.",
                result.endpoint_key, result.model_name, result.version, result.registration, result.version, here,
            )
            return None
        if not reason:  # the decision the version was registered with
            reason = registry.version_tag(result.model_name, result.version, "gate_reason") or action
        if metrics is None:
            metrics = registry.version_metrics(result.model_name, result.version)
        entry = with_retries(registry.promote, result.model_name, result.version, action=action,
                             reason=reason, metrics=metrics, flow_run=this_flow_run())
        if entry is not None:
            from tasks.artifacts import publish_ledger

            publish_ledger(result.model_name)
    except Exception as error:  # noqa: BLE001 - see the docstring
        logger.error("%s v%s serves %s but the registry's champion alias, ledger or ledger artifact was not "
                     "updated: %s: %s", result.model_name, result.version, result.endpoint_key,
                     type(error).__name__, error)
        return None
    return entry


def deploy_version(endpoint_key: str, model_name: str, version: str, sample: pd.DataFrame | None = None) -> endpoints.DeployResult:
    """The body of :func:`deploy` (in a worker thread, inside the task's transaction)."""
    result = with_retries(endpoints.deploy, endpoint_key, model_name, version, sample=sample)
    get_run_logger().info("%s v%s serves %s at %s", model_name, version, endpoint_key, result.scoring_url)
    txn = Transaction.get_active()
    registered = txn.get("registered", None) if txn is not None else None
    if registered is None or registered.get("local"):
        this_run = registered if registered and registered["version"] == str(version) else {}
        record_serving(result, "deploy", this_run.get("reason"), this_run.get("metrics"))
    return result


@task(
    name="deploy",
    task_run_name="deploy {model_name} v{version} -> {endpoint_key}",
    cache_policy=NO_CACHE,
)
async def deploy(endpoint_key: str, model_name: str, version: str, sample: pd.DataFrame | None = None) -> endpoints.DeployResult:
    return await asyncio.to_thread(deploy_version, endpoint_key, model_name, version, sample)
