"""The executing workspace plays Azure ML faithfully enough to trust the tests built on it, and
storage reads what its jobs report (``azureml://datastores/...`` and ``azureml://jobs/...``)."""

from __future__ import annotations

import polars as pl
import pytest
from azure.ai.ml import Output, command

from deployments.azureml import jobs, registration
from salesrisk import storage

WRITE_PARQUET = (
    "python -c \"import sys, polars as pl; pl.DataFrame({'a': [1, 2, 3]}).write_parquet(sys.argv[1] + '/out.parquet')\" "
    "${{outputs.result}}"
)


def test_datastore_uris_resolve_to_the_container_behind_the_datastore(executing_workspace) -> None:
    frame = pl.DataFrame({"a": [1, 2]})
    storage.write_parquet(frame, executing_workspace.datastore_abfs("salesrisk/x/prepared.parquet"))

    short = "azureml://datastores/workspaceblobstore/paths/salesrisk/x/prepared.parquet"
    long = ("azureml://subscriptions/s/resourcegroups/rg/workspaces/ws/datastores/workspaceblobstore/paths/"
            "salesrisk/x/prepared.parquet")
    assert storage.exists(short) and storage.exists(long)
    assert storage.read_parquet(short).equals(frame)
    assert storage.fingerprint(short) == storage.fingerprint(long)
    assert not storage.exists("azureml://datastores/workspaceblobstore/paths/salesrisk/nothing.parquet")
    with pytest.raises(storage.StorageError, match="expected azureml://datastores"):
        storage.exists("azureml://registries/x/models/y")


def test_a_command_job_runs_and_its_output_is_read_where_the_service_reports_it(executing_workspace) -> None:
    job = command(command=WRITE_PARQUET, outputs={"result": Output(type="uri_folder")},
                  environment="azureml:salesrisk:1", compute="cpu-cluster", experiment_name="double")

    result = jobs.submit_and_wait(job)

    assert result.status == "Completed"
    assert result.output_uri == f"azureml://datastores/workspaceblobstore/paths/azureml/{result.job_name}/result/"
    expected = pl.DataFrame({"a": [1, 2, 3]})
    assert storage.read_parquet(storage.join(result.output_uri, "out.parquet")).equals(expected)
    by_job = f"azureml://jobs/{result.job_name}/outputs/result/paths/out.parquet"
    assert storage.read_parquet(by_job).equals(expected)
    # the job's MLflow run is the job: same id, finished
    import mlflow

    assert mlflow.MlflowClient().get_run(result.job_name).info.status == "FINISHED"


def test_a_failed_job_reports_its_own_log(executing_workspace) -> None:
    job = command(command="python -c \"import sys; print('the input has no column amount'); sys.exit(3)\"",
                  environment="azureml:salesrisk:1", compute="cpu-cluster")
    with pytest.raises(jobs.AzureJobError) as raised:
        jobs.submit_and_wait(job)
    assert raised.value.status == "Failed"
    assert "the input has no column amount" in raised.value.log_tail


def test_only_a_completed_job_output_holding_an_mlflow_model_registers(executing_workspace) -> None:
    job = command(command=WRITE_PARQUET, outputs={"result": Output(type="uri_folder")},
                  environment="azureml:salesrisk:1", compute="cpu-cluster")
    name = jobs.submit_and_wait(job).job_name
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError, match="did not complete"):
        registration.register_job_model("m", "no_such_job")
    with pytest.raises(HttpResponseError, match="no MLflow model"):
        registration.register_job_model("m", name, output_name="result")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_pipeline_job_runs_its_steps_in_order(azure_project: str, executing_workspace) -> None:
    sources = {table: storage.join(azure_project, table) for table in ("risk_evaluations", "ml_outcomes")}

    result = jobs.submit_pipeline("win_probability", sources, {}, "pipeline")

    parent = executing_workspace.jobs[result.job_name]
    children = [executing_workspace.jobs[name] for name in parent.children]
    assert [c.spec["component"]["command"].split()[3] for c in children] == ["models.prepare", "models.win_probability"]
    assert {c.status for c in children} == {"Completed"}
    assert set(result.metrics) >= {"Brier", "AUC_ROC"}
    assert storage.exists(storage.join(result.output_uri, "model", "MLmodel"))


def test_a_version_never_registered_cannot_be_deployed(executing_workspace, monkeypatch) -> None:
    import pandas as pd

    from deployments import endpoints
    from deployments.azureml.endpoints import endpoint_name

    monkeypatch.setenv("SALESRISK_SERVING", "azureml")
    with pytest.raises(endpoints.DeployError, match="failed to create the deployment.*not found"):
        endpoints.deploy("anomaly", "anomaly-detection-isolation-forest", "7", sample=pd.DataFrame({"a": [1.0]}))
    assert executing_workspace.endpoints[endpoint_name("anomaly")].traffic == {}
    assert executing_workspace.deployments == {}
