"""Champion/challenger: score the candidate and the serving version on the same held-out rows."""

from __future__ import annotations

import asyncio

import importlib

import polars as pl
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from deployments import endpoints
from models import gate
from salesrisk import registry, storage
from tasks.artifacts import decision_markdown
from tasks.refs import TrainedModel


def held_out_rows(trained: TrainedModel) -> pl.DataFrame:
    """The rows the candidate did not train on, found by the trainer's own split."""
    module = importlib.import_module(f"models.{trained.model_id}")
    data = storage.read_parquet(trained.training_data.uri)
    industry = trained.params.get("industry_id")
    if industry and "industry_id" in data.columns:
        data = data.filter(pl.col("industry_id").cast(pl.String) == str(industry))
    return module.holdout(data, seed=int(trained.params.get("seed", 42)))


def score(model_id: str, model_uri: str, rows: pl.DataFrame) -> dict[str, float]:
    import mlflow

    registry.configure()
    module = importlib.import_module(f"models.{model_id}")
    return module.evaluate(mlflow.pyfunc.load_model(model_uri), rows)


def serving_version_of(trained: TrainedModel, endpoint_key: str) -> tuple[str, str | None] | None:
    """The version now serving this model's endpoint, with the run that produced it."""
    live = endpoints.current(endpoint_key)
    if live is None or live.model_name != trained.model_name:
        return None
    run_id = registry.client().get_model_version(live.model_name, live.version).run_id
    return live.version, run_id


def judged(metrics: dict[str, float] | None) -> dict[str, float] | None:
    """Only metrics with a known better-direction take part in the gate (e.g. not anomaly_rate,
    which an unlabelled anomaly detector reports for information)."""
    if metrics is None:
        return None
    return {name: value for name, value in metrics.items() if name in gate.HIGHER_IS_BETTER | gate.LOWER_IS_BETTER}


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
        decision = gate.decide(judged(trained.metrics), None, force=force)
    else:
        rows = held_out_rows(trained)
        candidate = score(trained.model_id, trained.model_uri, rows)
        champion = score(trained.model_id, registry.model_uri(trained.model_name, serving[0]), rows)
        decision = gate.decide(judged(candidate), judged(champion), force=force)
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
