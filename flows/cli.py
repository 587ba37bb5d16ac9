"""Command lines for flows, built from the flow's own signature so they cannot drift from it.

``python flows/<file>.py --help`` lists the flow's parameters; a ``bool`` parameter that defaults
to true gets a ``--no-<name>`` switch, a list takes comma-separated values.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import logging
import sys
import typing
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from flows import local_api
from salesrisk import catalog

if TYPE_CHECKING:  # Prefect is imported by the flow modules, after local_api.start()
    from prefect import Flow


# What each runbook input means, shown by --help (flows share the runbook's parameter names).
PARAMETER_HELP = {
    "training_data": "prepared Parquet file or folder: a path, abfs://<container>@<account>.dfs.core.windows.net/<path> "
    "or azureml:<name>:<version>; without it the input is prepared from the lake",
    "model_name": "registered model name (default: the runbook's name for this model)",
    "lake": "lake root, a folder or abfs:// URI (default: SALESRISK_LAKE or ./lake)",
    "tenant_id": "prepare only this tenant's partitions",
    "partition_date": "YYYY-MM-DD: prepare the data as of this date (partitions up to it, outcomes known by then)",
    "compute": "local or azureml (default: SALESRISK_COMPUTE or local)",
    "deploy": "deploy when the gate passes",
    "force": "deploy even when the gate would keep the serving version (the decision records it)",
    "seed": "random seed of the trainer",
    "models": "comma-separated model ids",
    "max_parallel": "model pipelines at once (0: one per CPU core)",
    "act": "act on a breach with the model's action from SALESRISK_MONITOR_ACTIONS (the breach is reported either way)",
    "industries": "train each industry's own model, where the model has them (risk scoring)",
    "min_closed_deals": "closed deals an industry needs for its own model (default: SALESRISK_INDUSTRY_MIN_CLOSED_DEALS)",
    "risk_evaluations": "URI of the /risk_evaluations table",
    "ml_outcomes": "URI of the /ml_outcomes table",
    "risk_snapshots": "URI of the /risk_snapshots table",
    "revenue_daily": "URI of the /revenue_daily table",
    "days": "days to append after the lake's last day",
    "endpoint": "endpoint key, e.g. win_probability",
    "to_version": "registered version to serve (default: the previous deployment)",
    "reason": "why, recorded with the rollback",
    "output": "a trainer's --output folder (model/, metrics.json, run.json)",
    "params": "the trainer's parameters as a JSON object (seed, industry_id, ...)",
    "trainer_options": "more options for the trainer's command line, as a JSON object, e.g. "
    "'{\"iterations\": 200}' (the trainer's --help lists them)",
    "trainer_options_by_model": "trainer options per model id, as a JSON object, e.g. "
    "'{\"<model id>\": {\"iterations\": 200}}'",
}


def parameter_help(name: str) -> str | None:
    """The help of a common parameter, else of a model's own (from its spec)."""
    if name == "model_id":
        return f"one of {', '.join(catalog.MODELS)}"
    if name in PARAMETER_HELP:
        return PARAMETER_HELP[name]
    own = (p.help for spec in catalog.MODELS.values() for p in spec.flow_parameters if p.name == name and p.help)
    return next(own, None)


def _base_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return _base_type(args[0])
    return annotation


def _parse_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _parse_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"name\": 1}}', got {value!r} ({error})")
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"name\": 1}}', got {value!r}")
    return parsed


def start_local_api() -> None:
    """Called by a flow script before its other imports: see flows/local_api.py."""
    local_api.start()


def build_parser(flow: Flow[..., Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python flows/{getattr(flow.fn, 'entry_file', None) or inspect.getfile(flow.fn).rsplit('/', 1)[-1]}",
        description=(inspect.getdoc(flow.fn) or flow.name).split("\n\n")[0],
    )
    hints = typing.get_type_hints(flow.fn)
    for name, param in inspect.signature(flow.fn).parameters.items():
        kind = _base_type(hints.get(name, str))
        flag = "--" + name.replace("_", "-")
        default = param.default
        if kind is bool:
            if default is True:
                parser.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_false",
                                    help=f"do not {parameter_help(name) or name}")
            else:
                parser.add_argument(flag, dest=name, action="store_true", help=parameter_help(name))
            continue
        if typing.get_origin(kind) in (list, tuple, Sequence) or kind in (list, tuple):
            convert: Any = _parse_list
        elif typing.get_origin(kind) is dict or kind is dict:
            convert = _parse_object
        elif kind is date:
            convert = date.fromisoformat
        elif kind in (int, float):
            convert = kind
        else:
            convert = str
        required = default is inspect.Parameter.empty
        shown = ",".join(default) if isinstance(default, (list, tuple)) else default
        text = parameter_help(name) or name.replace("_", " ")
        parser.add_argument(
            flag, dest=name, type=convert, required=required, default=None if required else default,
            help=text if required or default is None else f"{text} (default: {shown})",
        )
    return parser


def main(
    flow: Flow[..., Any],
    argv: Sequence[str] | None = None,
    render: Callable[[Any], str] | None = None,
) -> int:
    """Run the flow with parameters from the command line; exit non-zero when it fails.

    ``render`` turns the flow's result into what the user reads on stdout (e.g. a summary table).
    """
    args = vars(build_parser(flow).parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if local_api.starting():  # a cold start: the steps' interpreter imports while the API starts
        from deployments.compute import start_preloaded_steps

        start_preloaded_steps(args.get("compute"))
    local_api.wait()  # started by the script before its imports, if it was
    state = flow(**args, return_state=True)
    if inspect.isawaitable(state):
        state = asyncio.run(state)
    # The process ends next. Collecting the garbage of Prefect, MLflow, SQLAlchemy and pandas at
    # interpreter exit took 1.2-1.8 s of every run; frozen objects are left to the OS instead.
    # Exit handlers (Prefect's event drain, local_api.stop) still run.
    gc.freeze()
    if not state.is_completed():
        print(f"{flow.name}: {state.name}: {state.message}", file=sys.stderr)
        return 1
    if render is not None:
        result = state.result()
        print(render(asyncio.run(result) if inspect.isawaitable(result) else result))
    return 0
