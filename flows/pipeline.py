"""The pipeline every model flow runs: fetch -> prepare -> train -> evaluate -> register -> deploy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.transactions import transaction

from deployments import endpoints
from salesrisk import catalog, storage
from salesrisk.settings import get_settings
from tasks.artifacts import metrics_markdown
from tasks.evaluate import evaluate, held_out_rows
from tasks.fetch import fetch
from tasks.lake import bootstrap_lake
from tasks.prepare import prepare
from tasks.promote import deploy as deploy_task
from tasks.promote import register
from tasks.refs import DataRef, ModelSummary, TrainedModel
from tasks.train import train

SMOKE_ROWS = 5


TRAINER_OPTIONS = "trainer_options"  # a model flow's parameter: more options for its trainer


@dataclass
class PipelineOptions:
    """The runbook's inputs common to every model flow."""

    training_data: str | None = None
    sources: dict[str, str] | None = None  # explicit table URIs (the runbook's pipelines)
    lake: str | None = None
    model_name: str | None = None
    tenant_id: str | None = None
    partition_date: date | None = None
    compute: str | None = None
    deploy: bool = True
    force: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # An unset optional parameter is left off the trainer's command line.
        self.params = {k: v for k, v in self.params.items() if v is not None}

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any], model_params: tuple[str, ...] = ()) -> PipelineOptions:
        """From a model flow's own parameters: the common ones become options, the named model
        parameters (plus the seed) go to the trainer's command line."""
        names = {f.name for f in fields(cls)} - {"params"}
        options = {k: v for k, v in parameters.items() if k in names}
        params = {k: parameters[k] for k in (*model_params, "seed") if k in parameters}
        # the trainer's other options (e.g. iterations, epochs), given as one JSON object
        params.update(parameters.get(TRAINER_OPTIONS) or {})
        return cls(**options, params=params)


async def prepared_input(model_id: str, options: PipelineOptions) -> DataRef:
    """Fetch the model's source tables (explicit URIs, else the lake's) and prepare them."""
    lake = options.lake or get_settings().lake
    tables = dict(options.sources or {})
    if not tables:
        tables = await bootstrap_lake(lake)
    needed = catalog.MODELS[model_id].sources  # the tables its preparation reads: all in the cache key
    missing = [t for t in needed if t not in tables]
    if missing:
        raise ValueError(f"{model_id}: no URI given for {', '.join(missing)}")
    sources = {table: await fetch(tables[table]) for table in needed}
    compute = options.compute or get_settings().compute
    args = (model_id, sources, lake, options.tenant_id, options.partition_date, compute)
    prepared = await prepare(*args)
    if not storage.exists(prepared.uri):  # a cached result whose files were cleaned away
        prepared = await prepare.with_options(refresh_cache=True)(*args)
    return prepared


async def training_input(model_id: str, options: PipelineOptions) -> DataRef:
    """Given training data is used as is; otherwise the source tables are prepared for the model."""
    if options.training_data:
        return await fetch(options.training_data)
    return await prepared_input(model_id, options)


async def run_model_pipeline(model_id: str, options: PipelineOptions) -> ModelSummary:
    industry = options.params.get("industry_id")
    model_name = options.model_name or catalog.registered_name(model_id, industry)
    endpoint_key = catalog.endpoint_key(model_id, industry)
    compute = options.compute or get_settings().compute

    data = await training_input(model_id, options)
    trained = await train(model_id, data, model_name, options.params, compute)
    return await promote(trained, endpoint_key, options)


async def promote(trained: TrainedModel, endpoint_key: str, options: PipelineOptions) -> ModelSummary:
    """Gate, then register and deploy in one transaction: for a model this flow trained, or one a
    trainer's command line trained (flows/promote_trained.py)."""
    logger = get_run_logger()
    model_id, model_name = trained.model_id, trained.model_name
    decision = await evaluate(trained, endpoint_key, options.force)

    scoring_url = None
    if options.deploy and decision.promote:
        sample = (await asyncio.to_thread(held_out_rows, trained)).head(SMOKE_ROWS).to_pandas()
        with transaction():
            version = await register(trained, decision)
            scoring_url = (await deploy_task(endpoint_key, model_name, version, sample)).scoring_url
    else:
        version = await register(trained, decision)
        live = endpoints.current(endpoint_key)
        scoring_url = live.scoring_url if live and live.model_name == model_name else None
        logger.info("%s v%s registered, not deployed: %s", model_name, version,
                    "deploy switched off" if not options.deploy else decision.reason)

    summary = ModelSummary(
        model_id=model_id,
        registered_name=model_name,
        version=version,
        metrics=trained.metrics,
        endpoint_key=endpoint_key,
        scoring_url=scoring_url,
        decision=decision.reason,
    )
    await create_markdown_artifact(
        markdown=metrics_markdown(trained, summary),
        key=f"metrics-{model_name}".lower().replace("_", "-"),
        description=f"metrics of {model_name}",
    )
    return summary
