"""Champion/challenger: score the candidate and the serving version on the same held-out rows."""

from __future__ import annotations

import asyncio

import polars as pl
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from deployments import endpoints
from models import gate, specs
from salesrisk import catalog, registry, storage
from tasks.refs import TrainedModel


def held_out_rows(trained: TrainedModel) -> pl.DataFrame:
    """The rows the candidate did not train on, found by the trainer's own split."""
    data = storage.read_parquet(trained.training_data.uri)
    industry = trained.params.get("industry_id")
    if industry and catalog.INDUSTRY_ID in data.columns:
        data = data.filter(pl.col(catalog.INDUSTRY_ID).cast(pl.String) == str(industry))
    return specs.get(trained.model_id).trainer.holdout(data, trained.params)


def score(model_id: str, model_uri: str, rows: pl.DataFrame) -> dict[str, float]:
    import mlflow

    registry.configure()
    return specs.get(model_id).trainer.evaluate(mlflow.pyfunc.load_model(model_uri), rows)


def serving_version_of(trained: TrainedModel, endpoint_key: str) -> tuple[str, str | None] | None:
    """The version now serving this model's endpoint, with the run that produced it."""
    live = endpoints.current(endpoint_key)
    if live is None or live.model_name != trained.model_name:
        return None
    run_id = registry.client().get_model_version(live.model_name, live.version).run_id
    return live.version, run_id


def judged(model_id: str, metrics: dict[str, float] | None) -> dict[str, float] | None:
    """Only the spec's gated metrics take part in the gate (e.g. not anomaly_rate, which an
    unlabelled anomaly detector reports for information)."""
    if metrics is None:
        return None
    directions = catalog.MODELS[model_id].directions
    return {name: value for name, value in metrics.items() if name in directions}


def decide(model_id: str, candidate: dict[str, float], champion: dict[str, float] | None, force: bool) -> gate.GateDecision:
    """The gate with the model's own metric directions and tolerances (from its spec)."""
    spec = catalog.MODELS[model_id]
    return gate.decide(judged(model_id, candidate) or {}, judged(model_id, champion), tolerances=spec.tolerances,
                       force=force, directions=spec.directions)


def decision_markdown(trained: TrainedModel, decision: gate.GateDecision) -> str:
    names = sorted(set(decision.candidate) | set(decision.champion or {}))
    rows = "\n".join(
        f"| {name} | {decision.candidate.get(name, float('nan')):.4f} | "
        f"{(decision.champion or {}).get(name, float('nan')):.4f} |"
        for name in names
    )
    verdict = "promote" if decision.promote else "keep the champion"
    return (
        f"# {trained.model_name}: {verdict}\n\n{decision.reason}\n\n"
        f"| metric | candidate | champion |\n|---|---|---|\n{rows}\n\n"
        f"MLflow run: `{trained.run_id}`; training data `{trained.training_data.uri}`\n"
    )


def gate_candidate(trained: TrainedModel, endpoint_key: str, force: bool = False) -> gate.GateDecision:
    logger = get_run_logger()
    serving = serving_version_of(trained, endpoint_key)
    if serving is not None and serving[1] == trained.run_id and not force:
        # An unchanged rerun (train came from the cache): nothing new to score.
        decision = gate.GateDecision(
            promote=False,
            reason=f"version {serving[0]} from this very run is already serving",
            candidate=trained.metrics,
            champion=trained.metrics,
            forced=False,
        )
    elif serving is None:
        # No champion to compare with: the trainer's own held-out metrics are the candidate's
        # scores, and deploy smoke-tests the saved model before it takes traffic.
        decision = decide(trained.model_id, trained.metrics, None, force)
    else:
        rows = held_out_rows(trained)
        candidate = score(trained.model_id, trained.model_uri, rows)
        champion = score(trained.model_id, registry.model_uri(trained.model_name, serving[0]), rows)
        decision = decide(trained.model_id, candidate, champion, force)
    logger.info("gate for %s: %s", trained.model_name, decision.reason)
    create_markdown_artifact(
        markdown=decision_markdown(trained, decision),
        key=f"gate-{trained.model_name}".lower().replace("_", "-"),
        description=f"champion/challenger decision for {trained.model_name}",
        _sync=True,  # runs in a worker thread of an async flow
    )
    return decision


@task(name="evaluate", task_run_name="evaluate {trained.model_name}", cache_policy=NO_CACHE)
async def evaluate(trained: TrainedModel, endpoint_key: str, force: bool = False) -> gate.GateDecision:
    return await asyncio.to_thread(gate_candidate, trained, endpoint_key, force)
