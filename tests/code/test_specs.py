"""Every catalogued model is bound whole: data spec, preparation, contract, trainer, flow, jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import gate, specs
from salesrisk import catalog

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("model_id", sorted(catalog.MODELS))
def test_each_model_is_bound_to_its_spec(model_id: str) -> None:
    binding = specs.get(model_id)
    spec = catalog.MODELS[model_id]
    assert binding.spec is spec
    module = binding.trainer.load()
    assert module.__name__ == binding.trainer.module  # the command line runs the module bound here
    assert all(callable(getattr(module, name, None)) for name in ("main", "holdout", "evaluate", "fit"))
    assert (ROOT / "flows" / f"{spec.flow_file}.py").is_file()
    assert spec.directions and set(spec.directions) <= set(gate.LOWER_IS_BETTER | gate.HIGHER_IS_BETTER)
    assert set(spec.metrics) <= {m.name for m in spec.scores}


def test_an_unknown_model_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown model id 'nope'"):
        specs.get("nope")


def test_registering_a_model_reaches_every_derived_list() -> None:
    from flows import cli, prefect_yaml
    from flows.model_flow import flow_for

    spec = catalog.ModelSpec("toy", "toy-model", "toy_key", (catalog.Metric("MAE", False),), (catalog.RISK_EVALUATIONS,),
                             flow_name="toy-flow", flow_file="toy", flow_parameters=(catalog.FlowParameter("alpha", float, 1.0, "ridge alpha"),))
    binding = specs.ModelBinding(spec, prepare=lambda inp: None, contract=lambda names, features: (),  # type: ignore[arg-type,return-value]
                                 trainer=specs.Trainer("toy", lambda: None))  # type: ignore[arg-type,return-value]
    with specs.registered(binding):
        assert "toy_key" in catalog.ENDPOINT_KEYS and catalog.spec_of_endpoint("toy_key") is spec
        assert "flows/toy.py:flow" in prefect_yaml.render()
        built = flow_for("toy")
        assert built.name == "toy-flow" and "alpha" in built.parameters.properties
        assert "--alpha ALPHA" in cli.build_parser(built).format_help() and "ridge alpha" in cli.build_parser(built).format_help()
    assert "toy" not in catalog.MODELS and "toy_key" not in catalog.ENDPOINT_KEYS


def test_the_azure_ml_jobs_take_their_inputs_from_the_spec() -> None:
    """What deployments/azureml/components.py builds each trainer's job from is in the spec."""
    from deployments.azureml import components

    for model_id, job in components.TRAINER_JOBS.items():
        spec = catalog.MODELS[model_id]
        assert (job.job_file, job.lake_folder) == (spec.azure_job_file, spec.azure_training_folder)
        expected = [
            (p.name, "--" + p.name.replace("_", "-"),
             p.job_default if p.job_default is not None else (p.default if p.default is not None else components.UNSET))
            for p in spec.flow_parameters
        ]
        assert [(q.name, q.flag, q.default) for q in job.params] == expected
    assert set(components.TRAINER_JOBS) == set(catalog.MODELS)
