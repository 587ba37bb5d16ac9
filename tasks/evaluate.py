"""Champion/challenger: score the candidate and the serving version on the same rows, ones neither
of them trained on (the candidate's held-out rows the champion never saw either)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import polars as pl
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import CacheKeyFnPolicy

from deployments import endpoints
from models import gate, specs, splits
from salesrisk import catalog, registry, storage
from tasks.artifacts import decision_markdown
from tasks.policies import ml_code_fingerprint
from tasks.refs import TrainedModel


ROW = "__row"  # position in the training file, carried through the trainer's split


def training_frame(uri: str, params: Mapping[str, Any]) -> pl.DataFrame:
    data = storage.read_parquet(uri)
    industry = params.get("industry_id")
    if industry and catalog.INDUSTRY_ID in data.columns:
        data = data.filter(pl.col(catalog.INDUSTRY_ID).cast(pl.String) == str(industry))
    return data


def _split(model_id: str, uri: str, params: Mapping[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(held-out rows as the trainer returns them, raw rows it trained on), both with ROW."""
    data = training_frame(uri, params).with_row_index(ROW)
    held = specs.get(model_id).trainer.holdout(data, params)
    return held, data.filter(~pl.col(ROW).is_in(held.get_column(ROW).implode()))


def held_out_rows(trained: TrainedModel) -> pl.DataFrame:
    """The rows the candidate did not train on, found by the trainer's own split."""
    return _split(trained.model_id, trained.training_data.uri, trained.params)[0].drop(ROW)


def _tag_value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None if text == "None" else text


def champion_seen_rows(model_id: str, model_name: str, version: str) -> pl.DataFrame | None:
    """The rows the champion trained on, from the training data and parameters its version was
    registered with (tasks/promote.version_tags); None when they are not known or no longer exist."""
    tags = registry.client().get_model_version(model_name, version).tags or {}
    uri = tags.get("training_data")
    if not uri or not storage.exists(uri):
        return None
    params = {k.removeprefix("param."): _tag_value(v) for k, v in tags.items() if k.startswith("param.")}
    return _split(model_id, uri, params)[1]


def fair_rows(trained: TrainedModel, champion_version: str) -> tuple[pl.DataFrame, str]:
    """The candidate's held-out rows the champion never trained on either, and a line saying so."""
    held, _ = _split(trained.model_id, trained.training_data.uri, trained.params)
    seen = champion_seen_rows(trained.model_id, trained.model_name, champion_version)
    if seen is None:
        return held.drop(ROW), (
            f"champion v{champion_version}'s training data is not known: scored on the candidate's "
            f"{held.height} held-out rows"
        )
    data = training_frame(trained.training_data.uri, trained.params).with_row_index(ROW)
    raw_held = data.filter(pl.col(ROW).is_in(held.get_column(ROW).implode()))
    unseen = splits.unseen(raw_held, seen, specs.get(trained.model_id).trainer.group)
    rows = held.filter(pl.col(ROW).is_in(unseen.get_column(ROW).implode())).drop(ROW)
    return rows, f"scored on {rows.height} of the candidate's {held.height} held-out rows, the ones champion v{champion_version} never trained on either"


def score(model_id: str, model_uri: str, rows: pl.DataFrame) -> dict[str, float]:
    import mlflow

    registry.configure()
    return specs.get(model_id).trainer.evaluate(mlflow.pyfunc.load_model(model_uri), rows)


def serving_version_of(trained: TrainedModel, endpoint_key: str) -> tuple[str, str | None] | None:
    """The version now serving this model's endpoint, with the run that produced it (``None`` for
    a version the tracking store does not hold)."""
    live = endpoints.current(endpoint_key)
    if live is None or live.model_name != trained.model_name:
        return None
    return live.version, registry.registered_run(live.model_name, live.version)


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
    elif serving is None or serving[1] is None:
        # No champion to compare with: the trainer's own held-out metrics are the candidate's
        # scores, and deploy smoke-tests the saved model before it takes traffic.
        decision = decide(trained.model_id, trained.metrics, None, force)
        if serving is not None:  # the champion's registration went with a deleted or replaced store
            decision.reason = (
                f"no champion in this tracking store: {endpoint_key} serves {trained.model_name} v{serving[0]}, "
                f"which {registry.configure()} does not hold (a new or reset store)\n{decision.reason}"
            )
    else:
        rows, scored_on = fair_rows(trained, serving[0])
        if rows.height == 0:  # nothing to compare on: the candidate cannot show it is not worse
            decision = gate.GateDecision(
                promote=force,
                reason=(("forced promotion: " if force else "") + "no held-out row is unseen by both candidate and "
                        f"champion v{serving[0]} (the new data adds no rows after the champion's training data)"),
                candidate=trained.metrics, champion=None, forced=force,
            )
        else:
            candidate = score(trained.model_id, trained.model_uri, rows)
            champion = score(trained.model_id, registry.model_uri(trained.model_name, serving[0]), rows)
            decision = decide(trained.model_id, candidate, champion, force)
            decision.reason = f"{scored_on}\n{decision.reason}"
    if trained.params.get(catalog.INDUSTRY_ID) and decision.promote and not decision.forced:
        decision = against_fallback(trained, decision)
    logger.info("gate for %s: %s", trained.model_name, decision.reason)
    create_markdown_artifact(
        markdown=decision_markdown(trained, decision),
        key=f"gate-{trained.model_name}".lower().replace("_", "-"),
        description=f"champion/challenger decision for {trained.model_name}",
        _sync=True,  # runs in a worker thread of an async flow
    )
    return decision


def against_fallback(trained: TrainedModel, decision: gate.GateDecision) -> gate.GateDecision:
    """An industry model serves only where it beats the global model: both are scored on the
    industry's held-out rows the global model never trained on, and the gate (the spec's metrics,
    directions and tolerances) must pass with the global model as the champion as well."""
    spec = catalog.MODELS[trained.model_id]
    industry = str(trained.params[catalog.INDUSTRY_ID])
    live = endpoints.current(spec.endpoint_key)
    if live is None:
        return dataclasses.replace(
            decision, promote=False, baseline_name=spec.registered_name,
            reason=f"{decision.reason}\nblocked: no {spec.registered_name} serves {spec.endpoint_key}, so "
            f"industry {industry!r} cannot show it beats the global model; train and deploy the global model first",
        )
    held, _ = _split(trained.model_id, trained.training_data.uri, trained.params)
    seen = champion_seen_rows(trained.model_id, live.model_name, live.version)
    rows, note = held.drop(ROW), f"all {held.height} of the industry's held-out rows (the global model's training rows are unknown)"
    if seen is not None:
        data = training_frame(trained.training_data.uri, trained.params).with_row_index(ROW)
        raw_held = data.filter(pl.col(ROW).is_in(held.get_column(ROW).implode()))
        unseen = splits.unseen(raw_held, seen, specs.get(trained.model_id).trainer.group)
        rows = held.filter(pl.col(ROW).is_in(unseen.get_column(ROW).implode())).drop(ROW)
        note = f"{rows.height} of the industry's {held.height} held-out rows, ones {live.model_name} v{live.version} never trained on"
    name = f"{live.model_name} v{live.version}"
    if rows.height == 0:
        return dataclasses.replace(
            decision, promote=False, baseline_name=name,
            reason=f"{decision.reason}\nblocked: no held-out row of industry {industry!r} is unseen by {name}; "
            "nothing shows the industry model beats it",
        )
    candidate = score(trained.model_id, trained.model_uri, rows)
    baseline = score(trained.model_id, registry.model_uri(live.model_name, live.version), rows)
    versus = decide(trained.model_id, candidate, baseline, False)
    verdict = "beats" if versus.promote else "does not beat"
    lines = "\n".join(f"against {name}: {line}" for line in versus.reason.splitlines())
    return dataclasses.replace(
        decision, promote=versus.promote, baseline=versus.champion, baseline_name=name,
        candidate_vs_baseline=versus.candidate,
        reason=f"{decision.reason}\nindustry {industry!r}: {verdict} {name} on {note}\n{lines}",
    )


def gate_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """What a gate decision depends on: the candidate's run, the versions it is compared with (the
    endpoint's champion and, for an industry model, the global model serving beside it) and the
    code. An unchanged rerun gets the decision already recorded (``Cached`` in the UI) instead of
    loading and scoring both models again; a new champion or a rollback changes the key. A forced
    gate, or a candidate with no run, is always evaluated."""
    trained: TrainedModel = parameters["trained"]
    if parameters.get("force") or not trained.run_id:
        return None
    compared = [endpoints.current(parameters["endpoint_key"])]
    if trained.params.get(catalog.INDUSTRY_ID):
        compared.append(endpoints.current(catalog.MODELS[trained.model_id].endpoint_key))
    versions = [f"{live.model_name}:{live.version}" if live else "-" for live in compared]
    return hashlib.blake2b("|".join([trained.run_id, trained.model_uri, *versions, ml_code_fingerprint()]).encode(),
                           digest_size=16).hexdigest()


@task(name="evaluate", task_run_name="evaluate {trained.model_name}", cache_policy=CacheKeyFnPolicy(cache_key_fn=gate_key),
      persist_result=True)
async def evaluate(trained: TrainedModel, endpoint_key: str, force: bool = False) -> gate.GateDecision:
    return await asyncio.to_thread(gate_candidate, trained, endpoint_key, force)
