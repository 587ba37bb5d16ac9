"""The command-line contract every trainer shares, locally and as an Azure ML command job.

``python -m models.<name> --training-data URI --output DIR [--model-name NAME]
[--features LIST|auto] [model parameters] [--register] [--deploy]``

``--deploy`` goes through the same gate, lock and register+deploy transaction as the flows: the
trainer hands its output to ``python -m flows.promote_trained`` (see :func:`promote_by_flow`).

A trainer module supplies only its parameters and a fit function; reading the input, checking
its contract, writing ``DIR/model`` and ``DIR/metrics.json`` and logging to MLflow happen here,
once, so the five trainers cannot disagree about them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from salesrisk import catalog, runtime, storage
from salesrisk.settings import MissingSettingError

log = logging.getLogger("salesrisk.trainer")


@dataclass
class FitResult:
    """What a trainer's fit function hands back; the model itself is already saved in model_dir."""

    metrics: dict[str, float]
    extra_params: dict[str, Any] = field(default_factory=dict)
    # Per-epoch values (e.g. loss, val_loss), logged as epoch_<name> with MLflow steps so the
    # runbook's metric names keep meaning the final values.
    history: dict[str, list[float]] = field(default_factory=dict)


FitFunction = Callable[[pl.DataFrame, list[str], argparse.Namespace, Path], FitResult]


def build_parser(model_id: str, description: str) -> argparse.ArgumentParser:
    """The shared arguments; a trainer adds its own model parameters to the returned parser."""
    from models import specs

    binding = specs.get(model_id)
    spec = binding.spec
    parser = argparse.ArgumentParser(prog=f"python -m {binding.trainer.module}", description=description)
    parser.add_argument("--training-data", required=True, help="Parquet file or folder (path or abfs:// URI)")
    parser.add_argument("--output", required=True, type=Path, help="folder for model/ and metrics.json")
    parser.add_argument(
        "--model-name",
        default=None,
        help=f"registered model name (default: {spec.registered_name}; "
        "risk scoring with --industry-id: risk-scoring-<industry>)",
    )
    parser.add_argument(
        "--features",
        default=None,
        help="comma-separated feature columns, or 'auto' for every non-identifier column "
        "(default: the runbook's columns for this model)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--register", action="store_true", help="register the model in MLflow")
    parser.add_argument(
        "--deploy",
        action="store_true",
        help="gate, register and deploy to its endpoint, through the promote-trained flow (flows/promote_trained.py)",
    )
    return parser


def resolve_features(arg: str | None, df: pl.DataFrame, default: Sequence[str]) -> list[str]:
    """``None`` -> the runbook's columns; ``auto`` -> every column but ids, dates and targets."""
    if arg is None:
        return list(default)
    if arg.strip() == "auto":
        return [
            name
            for name, dtype in df.schema.items()
            if name not in catalog.NON_FEATURE_COLUMNS
            and not dtype.is_temporal()
            and not name.endswith("_id")
        ]
    return [name.strip() for name in arg.split(",") if name.strip()]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into a usage error)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def model_params(args: argparse.Namespace) -> dict[str, Any]:
    """Every parameter worth logging: the parsed arguments minus paths and switches."""
    skip = {"training_data", "output", "register", "deploy"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def write_metrics(output: Path, metrics: dict[str, float]) -> Path:
    bad = {k: v for k, v in metrics.items() if not isinstance(v, (int, float)) or not math.isfinite(v)}
    if bad:
        raise ValueError(f"metrics are not finite numbers: {bad}")
    path = output / "metrics.json"
    path.write_text(json.dumps({k: float(v) for k, v in metrics.items()}, indent=2, sort_keys=True))
    return path


def log_to_mlflow(
    model_id: str,
    args: argparse.Namespace,
    params: dict[str, Any],
    metrics: dict[str, float],
    history: dict[str, list[float]] | None = None,
) -> str:
    """Log to the active run (an Azure ML job sets one), else a new run in the model's experiment."""
    import mlflow

    from salesrisk import registry

    registry.configure()
    active = mlflow.active_run()
    run = active or mlflow.start_run(experiment_id=registry.experiment_id(args.model_name))
    try:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(metrics)
        for name, values in (history or {}).items():
            for step, value in enumerate(values, start=1):
                mlflow.log_metric(f"epoch_{name}", value, step=step)
        mlflow.log_artifacts(str(args.output / "model"), artifact_path="model")
        mlflow.log_artifact(str(args.output / "metrics.json"))
        return run.info.run_id
    finally:
        if active is None:
            mlflow.end_run()


def check_settings(args: argparse.Namespace) -> None:
    """Settings a later step needs are checked before training, not after an hour of it: with
    ``--deploy`` to Azure ML (SALESRISK_SERVING=azureml) the AZURE_ML_* variables must be set."""
    if args.deploy:
        from salesrisk.settings import get_settings

        settings = get_settings()
        if settings.serving == "azureml":
            settings.require_azure()


def read_training_data(uri: str) -> pl.DataFrame:
    """The training file, or a StorageError naming it (polars' own errors do not name the file)."""
    storage.reject_asset_reference(uri)
    try:
        return storage.read_parquet(uri)
    except pl.exceptions.PolarsError as error:
        raise storage.StorageError(f"{uri}: cannot read as Parquet (expected a Parquet file or folder): {error}") from error


def clear_outputs(output: Path) -> None:
    """No stale model or metrics from an earlier run may sit beside a new (or failed) one."""
    import shutil

    shutil.rmtree(output / "model", ignore_errors=True)
    for name in ("metrics.json", "run.json"):
        (output / name).unlink(missing_ok=True)


def discard_outputs(output: Path, created: bool) -> None:
    """After a failed fit: no model or metrics, and no empty folder this run made."""
    clear_outputs(output)
    if created:
        try:
            output.rmdir()
        except OSError:  # something else was put there meanwhile: leave it
            pass


def register(model_id: str, model_name: str, run_id: str) -> str:
    """``--register``: a new version of the run's model, under the same per-name lock the flows
    register with (what serves does not change, so no gate is needed)."""
    from salesrisk import locks, registry

    with locks.held(f"register-{model_name}"):
        version = registry.register_run_model(run_id, model_name, tags={"model_id": model_id})
    log.info("registered %s version %s", model_name, version)
    return version


def promote_by_flow(model_id: str, args: argparse.Namespace) -> int:
    """``--deploy``: hand the finished output to the promote-trained flow, which gates it against
    the serving version, then registers and deploys it in one transaction under the step locks, as
    the model flows do. A command line, not an import: models/ stays free of Prefect and deployments/."""
    import subprocess

    params = {k: v for k, v in model_params(args).items() if k not in {"model_name", "features"} and v is not None}
    command = [
        sys.executable, "-m", "flows.promote_trained",
        "--model-id", model_id, "--output", str(args.output.resolve()),
        "--training-data", args.training_data, "--params", json.dumps(params, default=str),
    ]
    log.info("deploying through the promote-trained flow: %s", " ".join(command[1:]))
    return subprocess.run(command, check=False).returncode


def run(
    model_id: str,
    parser: argparse.ArgumentParser,
    fit: FitFunction,
    default_features: Sequence[str],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, read, check, fit, write, log; return a process exit code (2 for bad input)."""
    from models import contracts

    args = parser.parse_args(argv)
    runtime.apply_defaults()  # quiet libraries, no progress bars, also when run by hand
    if args.model_name is None:
        args.model_name = catalog.registered_name(model_id, getattr(args, "industry_id", None))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_settings(args)
        storage.require_output_folder(str(args.output))
        df = read_training_data(args.training_data)
        features = resolve_features(args.features, df, default_features)
        contracts.validate_training_input(model_id, df, args.training_data, features=features)
    except (contracts.DataContractError, storage.StorageError, MissingSettingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    created = not args.output.exists()
    args.output.mkdir(parents=True, exist_ok=True)
    model_dir = args.output / "model"
    clear_outputs(args.output)
    started = time.perf_counter()
    try:
        result = fit(df, features, args, model_dir)
    except contracts.DataContractError as error:  # e.g. no rows left after the model's own filter
        discard_outputs(args.output, created)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BaseException:  # a crash leaves no half-written model behind either
        discard_outputs(args.output, created)
        raise
    fit_seconds = time.perf_counter() - started
    write_metrics(args.output, result.metrics)
    params = {**model_params(args), "features": ",".join(features), **result.extra_params}
    run_id = log_to_mlflow(model_id, args, params, result.metrics, result.history)
    try:  # plots on the run (models/reports.py) are a convenience: never fail training over them
        from models import reports

        reports.log_report_to_run(run_id, model_id, model_dir, df, args)
    except Exception as error:  # noqa: BLE001
        log.warning("training report of %s not logged: %s: %s", args.model_name, type(error).__name__, error)
    # The orchestrator reads this to find the run (and its model) the process logged.
    (args.output / "run.json").write_text(
        json.dumps({"run_id": run_id, "model_name": args.model_name, "fit_seconds": round(fit_seconds, 3)})
    )
    log.info("%s: %s (run %s)", args.model_name, result.metrics, run_id)
    if args.deploy:
        return promote_by_flow(model_id, args)
    if args.register:
        register(model_id, args.model_name, run_id)
    return 0
