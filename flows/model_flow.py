"""The one model flow, built from a model's spec: its parameters, name, docstring and pipeline.

Every model flow has the runbook's common parameters plus the model's own
(``spec.flow_parameters``), which go to its trainer's command line. The files
``flows/<spec.flow_file>.py`` are two-line entry points for prefect.yaml and
``python flows/<file>.py``; ``--help`` is built from the signature made here.
"""

from __future__ import annotations

import inspect
from datetime import date
from pathlib import Path
from typing import Any

from prefect import Flow, flow

from flows.pipeline import TRAINER_OPTIONS, PipelineOptions, run_model_pipeline
from salesrisk import catalog
from salesrisk.catalog import FlowParameter, ModelSpec
from tasks.refs import ModelSummary

# Before the model's own parameters, then after them (the order --help shows).
LEADING: tuple[FlowParameter, ...] = (FlowParameter("training_data", str), FlowParameter("model_name", str))
TRAILING: tuple[FlowParameter, ...] = (
    FlowParameter("lake", str),
    FlowParameter("tenant_id", str),
    FlowParameter("partition_date", date),
    FlowParameter("compute", str),
    FlowParameter("deploy", bool, True),
    FlowParameter("force", bool, False),
    FlowParameter("seed", int, 42),
    FlowParameter(TRAINER_OPTIONS, dict),
)
LAKE_NOTE = "Without training_data, the model's input is prepared from the lake (SALESRISK_LAKE)."

_FLOWS: dict[str, Flow[..., Any]] = {}


def _parameter(p: FlowParameter) -> inspect.Parameter:
    annotation = p.type if p.default is not None else p.type | None
    return inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=annotation)


def build_flow(spec: ModelSpec) -> Flow[..., Any]:
    """A Prefect flow named ``spec.flow_name`` whose signature lists the model's parameters."""
    own = spec.parameter_names

    async def model_flow(**parameters: Any) -> ModelSummary:
        return await run_model_pipeline(spec.model_id, PipelineOptions.from_parameters(parameters, own))

    parameters = [_parameter(p) for p in (*LEADING, *spec.flow_parameters, *TRAILING)]
    model_flow.__signature__ = inspect.Signature(parameters, return_annotation=ModelSummary)  # type: ignore[attr-defined]
    model_flow.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": ModelSummary}
    model_flow.__name__ = model_flow.__qualname__ = spec.flow_file or spec.model_id
    model_flow.entry_file = f"{spec.flow_file or spec.model_id}.py"  # type: ignore[attr-defined]  # --help's prog
    model_flow.__doc__ = f"{spec.description or spec.model_id}\n\n{LAKE_NOTE}"
    return flow(name=spec.flow_name or spec.model_id.replace("_", "-"))(model_flow)


def flow_for(model_id: str) -> Flow[..., Any]:
    """The model's flow (built once per spec)."""
    spec = catalog.MODELS[model_id]
    built = _FLOWS.get(model_id)
    if built is None or built.fn.__name__ != (spec.flow_file or spec.model_id) or built.name != (spec.flow_name or built.name):
        built = _FLOWS[model_id] = build_flow(spec)
    return built


def model_flows() -> dict[str, Flow[..., Any]]:
    """Every catalogued model's flow, by model id."""
    return {model_id: flow_for(model_id) for model_id in catalog.MODELS}


def flow_of_file(path: str) -> Flow[..., Any]:
    """The flow of the model whose spec names ``flows/<path's stem>.py`` as its entry point."""
    stem = Path(path).stem
    for spec in catalog.MODELS.values():
        if spec.flow_file == stem:
            return flow_for(spec.model_id)
    raise LookupError(f"{path}: no model spec has flow_file {stem!r}")
