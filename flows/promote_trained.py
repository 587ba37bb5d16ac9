"""Flow `promote-trained`: gate, register and deploy a model a trainer's command line trained.

``python -m models.<trainer> ... --deploy`` hands its output folder here, so a model deployed from
a command line goes through the same gate, registration lock and register+deploy transaction as
one the model flows train. Run by hand::

    python flows/promote_trained.py --model-id win_probability --output DIR --training-data URI
"""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

import json
from pathlib import Path

from prefect import flow

from flows.pipeline import PipelineOptions, promote
from salesrisk import catalog, storage
from tasks.refs import DataRef, ModelSummary, TrainedModel


def trained_output(model_id: str, output: str, training_data: str, params: dict) -> TrainedModel:
    """What a trainer left in ``output`` (run.json, metrics.json, model/) as the flows see it."""
    folder = Path(output)
    missing = [name for name in ("run.json", "metrics.json", "model") if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{output}: no {', '.join(missing)}; expected a trainer's finished --output folder")
    run = json.loads((folder / "run.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    data = DataRef(uri=training_data, fingerprint=storage.fingerprint(training_data))
    return TrainedModel(model_id, run["model_name"], str(folder), metrics, run.get("run_id"), data, params)


@flow(name="promote-trained")
async def promote_trained(
    model_id: str,
    output: str,
    training_data: str,
    params: str = "{}",
    deploy: bool = True,
    force: bool = False,
) -> ModelSummary:
    """Gate a trained model against the serving version, register it and deploy it if it passes."""
    if model_id not in catalog.MODELS:
        raise ValueError(f"model_id={model_id!r}: expected one of {', '.join(catalog.MODELS)}")
    trainer_params = json.loads(params)
    trained = trained_output(model_id, output, training_data, trainer_params)
    endpoint_key = catalog.endpoint_key(model_id, trainer_params.get("industry_id"))
    return await promote(trained, endpoint_key, PipelineOptions(deploy=deploy, force=force, params=trainer_params))


if __name__ == "__main__":
    raise SystemExit(cli.main(promote_trained))
