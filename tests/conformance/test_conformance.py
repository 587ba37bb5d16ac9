"""Every model in the catalog, with the trainer's own saved model, on every backend pair:
prepare -> train -> gate -> register (the model's flow) -> deploy -> one scored request, whose
every output column equals the model's own in-process prediction -> rollback.

Compute: a local process, or a job in the executing Azure ML workspace. Serving: the local
endpoint server over HTTP, or a managed online endpoint of that workspace.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from deployments import endpoints
from salesrisk import catalog, registry

pytestmark = [pytest.mark.slow]

COMPUTES = ("local", "azureml")
SERVINGS = ("local", "azureml")
CASES = [(m, c, s) for m in catalog.MODELS for c in COMPUTES for s in SERVINGS]


def registered_sample(name: str, version: str) -> pd.DataFrame:
    """The input example the trainer saved with the model."""
    import mlflow
    from mlflow.models import Model

    registry.configure()
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=registry.model_uri(name, version), dst_path=tmp)
        example = Model.load(local).load_input_example(local)
    assert example is not None, f"{name} v{version} has no input example"
    return example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)


def in_process(name: str, version: str, sample: pd.DataFrame) -> Any:
    import mlflow.pyfunc

    registry.configure()
    return mlflow.pyfunc.load_model(registry.model_uri(name, version)).predict(sample)


def _split(sample: pd.DataFrame) -> dict[str, Any]:
    split = json.loads(sample.to_json(orient="split", date_format="iso", index=False))
    return {"columns": split["columns"], "data": split["data"]}


def score(serving: str, key: str, sample: pd.DataFrame, server) -> tuple[list, str | None]:
    """One request to the live deployment, as a client sends it; (answer, version that served)."""
    if serving == "local":
        response = httpx.post(f"{server.url}/score/{key}", json={"input_data": _split(sample)},
                              headers=server.headers(), timeout=120)
        assert response.status_code == 200, response.text
        return response.json(), response.headers.get("x-model-version")
    from deployments.azureml import client as azure_client
    from deployments.azureml.endpoints import endpoint_name

    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp, "request.json")
        request.write_text(json.dumps({"input_data": _split(sample)}))
        answer = json.loads(azure_client.get_ml_client().online_endpoints.invoke(
            endpoint_name=endpoint_name(key), request_file=str(request)
        ))
    return answer.get("predictions", answer) if isinstance(answer, dict) else answer, None


def _plain(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def same(expected: Any, got: Any, where: str) -> None:
    expected, got = _plain(expected), _plain(got)
    if isinstance(expected, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and isinstance(expected, (int, float)), f"{where}: {got!r} != {expected!r}"
        assert math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9), f"{where}: {got!r} != {expected!r}"
    elif isinstance(expected, str) and isinstance(got, str) and expected[:4].isdigit():
        assert pd.Timestamp(got) == pd.Timestamp(expected), f"{where}: {got!r} != {expected!r}"
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{where}: {got!r} != {expected!r}"
        for i, (e, g) in enumerate(zip(expected, got)):
            same(e, g, f"{where}[{i}]")
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), f"{where}: {got!r} != {expected!r}"
        for k in expected:
            same(expected[k], got[k], f"{where}.{k}")
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


def assert_answer_matches(expected: Any, answer: list) -> None:
    """Every output column of the answer equals the in-process prediction, row by row."""
    assert isinstance(answer, list) and answer, answer
    if isinstance(expected, pd.DataFrame):
        assert all(isinstance(row, dict) for row in answer), answer[:2]
        assert len(answer) == len(expected)
        assert set(answer[0]) == {str(c) for c in expected.columns}
        for column in expected.columns:
            for i, value in enumerate(expected[column].tolist()):
                same(value, answer[i][str(column)], f"{column}[{i}]")
        return
    values = np.asarray(expected).reshape(len(answer), -1).tolist()
    for i, row in enumerate(answer):  # one score per row: a record with one column, or the bare value
        got = list(row.values()) if isinstance(row, dict) else (row if isinstance(row, list) else [row])
        same(values[i], got, f"row {i}")


@pytest.mark.parametrize(("model_id", "compute", "serving"), CASES, ids=["-".join(c) for c in CASES])
def test_conformance_model_on_backends(
    model_id: str, compute: str, serving: str, trained, server, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = trained(model_id, compute)  # prepare -> train -> gate -> register, by the model's flow
    name, version, key = summary.registered_name, str(summary.version), summary.endpoint_key
    assert (name, key) == (catalog.registered_name(model_id), catalog.endpoint_key(model_id))
    assert set(catalog.MODELS[model_id].metrics) <= set(summary.metrics)
    monkeypatch.setenv("SALESRISK_SERVING", serving)

    sample = registered_sample(name, version)
    expected = in_process(name, version, sample)
    deployed = endpoints.deploy(key, name, version, sample=sample)
    assert (deployed.model_name, deployed.version) == (name, version)
    answer, served_by = score(serving, key, sample, server)
    assert_answer_matches(expected, answer)
    if served_by is not None:
        assert served_by == version

    # Roll back: another registered version takes the traffic, then the rollback restores this one.
    client = registry.client()
    source = client.get_model_version(name, version)
    newer = str(client.create_model_version(name, source.source, run_id=source.run_id).version)
    endpoints.deploy(key, name, newer, sample=sample)
    assert endpoints.current(key).version == newer
    rolled = endpoints.rollback(key, reason="conformance")
    assert (rolled.version, endpoints.current(key).version) == (version, version)
    answer, served_by = score(serving, key, sample, server)
    assert_answer_matches(expected, answer)
    if served_by is not None:
        assert served_by == version


@pytest.mark.parametrize("model_id", list(catalog.MODELS))
def test_azure_ml_compute_mounts_the_models_tables_and_the_gate_reads_what_the_job_reported(
    model_id: str, trained, workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 13, drift bug 2): with SALESRISK_COMPUTE=azureml the prepare job mounts
    exactly the tables the model reads, its output comes back as Azure ML reports it
    (``azureml://``), and the gate reads the prepared rows there, with a champion to compare."""
    from salesrisk import storage

    key = catalog.endpoint_key(model_id)
    monkeypatch.delenv("SALESRISK_SERVING", raising=False)
    if endpoints.current(key) is None:  # run alone: the local candidate becomes the champion first
        local = trained(model_id, "local")
        endpoints.deploy(key, local.registered_name, str(local.version))
    champion = endpoints.current(key)
    summary = trained(model_id, "azureml")

    mine = [job for job in workspace.jobs.values()
            if job.parent is None and job.tags.get("salesrisk.model_id") == model_id]
    (prepare,) = [job for job in mine if job.tags.get("salesrisk.step") == "prepare"]  # submitted once
    assert prepare.status == "Completed"
    tables = sorted(key for key, value in prepare.spec["inputs"].items() if isinstance(value, dict))
    assert tables == sorted(catalog.MODELS[model_id].sources)
    prepared = storage.join(prepare.outputs["training_prep"], "prepared.parquet")
    assert prepared.startswith("azureml://datastores/workspaceblobstore/paths/azureml/")
    assert storage.exists(prepared)
    (train,) = [job for job in mine if "salesrisk.step" not in job.tags]
    assert train.status == "Completed"
    assert prepared in trained.reads[(model_id, "azureml")]
    decided = registry.client().get_model_version(summary.registered_name, str(summary.version)).tags
    assert any(tag.startswith("gate.champion.") for tag in decided), decided  # scored against the champion
