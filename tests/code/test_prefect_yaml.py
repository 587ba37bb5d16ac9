"""prefect.yaml is generated from the model specs: current with the generator, and every entry
point loads (through Prefect's own loader) the flow its spec names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows import prefect_yaml
from salesrisk import catalog

ROOT = Path(__file__).resolve().parents[2]


def deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_prefect_yaml_is_current_with_the_specs() -> None:
    assert (ROOT / "prefect.yaml").read_text() == prefect_yaml.render(), "run python -m flows.prefect_yaml"
    assert prefect_yaml.main(["--check"]) == 0


def test_check_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "prefect.yaml"
    stale.write_text(prefect_yaml.render().replace("flows/risk_scoring.py:flow", "flows/risk_scoring.py:gone"))
    monkeypatch.setattr(prefect_yaml, "PATH", stale)
    assert prefect_yaml.main(["--check"]) == 1


@pytest.mark.parametrize("model_id", sorted(catalog.MODELS))
def test_each_model_has_a_deployment_that_loads_its_flow(model_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.flows import load_flow_from_entrypoint

    spec = catalog.MODELS[model_id]
    entrypoints = [d["entrypoint"] for d in deployments() if d["entrypoint"].startswith(f"flows/{spec.flow_file}.py:")]
    assert len(entrypoints) == 1, f"{model_id}: one deployment expected, found {entrypoints}"
    monkeypatch.chdir(ROOT)
    loaded = load_flow_from_entrypoint(entrypoints[0])
    assert loaded.name == spec.flow_name
    signature = set(loaded.parameters.properties)
    assert set(spec.parameter_names) <= signature and {"training_data", "lake", "deploy", "seed"} <= signature


def test_every_entrypoint_file_exists() -> None:
    for deployment in deployments():
        file, _, attribute = deployment["entrypoint"].partition(":")
        assert (ROOT / file).is_file() and attribute, deployment
