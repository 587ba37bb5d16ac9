"""Submit, follow, fail and register through the one seam: an MLClient double (spec=MLClient)."""

from __future__ import annotations

import logging

import pytest

from deployments.azureml import client as azure_client
from deployments.azureml import components, jobs, registration
from deployments.compute import StepFailedError, TransientComputeError
from salesrisk.settings import MissingSettingError
from tests.azure.workspace_double import STUDIO, JobScript

LAKE = "abfs://lake@acct.dfs.core.windows.net"


def _statuses(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    prefix = f"Azure ML job {name}: "
    return [r.getMessage().removeprefix(prefix) for r in caplog.records if r.getMessage().startswith(prefix)]


def test_training_job_is_followed_to_completion(workspace, caplog, monkeypatch) -> None:
    monkeypatch.setenv("AZURE_ML_COMPUTE", "cpu-small")
    workspace.scripts.append(
        JobScript(["Queued", "Queued", "Running", "Running", "Completed"], metrics={"F1": 0.81},
                  output_path="azureml://datastores/workspaceblobstore/paths/azureml/job/model_output/")
    )
    caplog.set_level(logging.INFO, logger="salesrisk.azureml")

    result = jobs.submit_training(
        "anomaly", f"{LAKE}/ml_training/anomaly", None, {"param_contamination": 0.05, "features": "auto"},
        "anomaly-detection",
    )

    assert result.job_name == "salesrisk_job_1"
    assert result.status == "Completed"
    assert result.studio_url == STUDIO.format(name=result.job_name)
    assert result.metrics == {"F1": 0.81}
    assert result.output_uri == "azureml://datastores/workspaceblobstore/paths/azureml/job/model_output/"
    assert _statuses(caplog, result.job_name)[-1] == "Completed"
    workspace.client.jobs.stream.assert_called_once_with(result.job_name)  # the SDK follows the job

    node = workspace.submitted[0]
    assert node.compute == "cpu-small"
    assert node.experiment_name == "anomaly-detection"
    assert node.inputs["training_data"].path == "abfss://lake@acct.dfs.core.windows.net/ml_training/anomaly"
    assert node.inputs["param_contamination"]._data == 0.05
    assert node.inputs["param_n_estimators"]._data == 100  # the runbook default
    assert node.inputs["deploy_flag"]._data == components.UNSET  # the flow registers, not the job
    assert "--features ${{inputs.features}}" in node.command
    assert node.inputs["features"]._data == "auto"
    assert node._validate().passed


def test_failed_job_raises_with_studio_url_and_log_tail(workspace) -> None:
    log = "\n".join(f"epoch {i}" for i in range(100)) + "\nValueError: training_data has no column amount"
    workspace.scripts.append(JobScript(["Queued", "Running", "Failed"], log=log))

    with pytest.raises(jobs.AzureJobError) as raised:
        jobs.submit_training("win_probability", f"{LAKE}/x.parquet", None, {}, "win")

    error = raised.value
    assert isinstance(error, StepFailedError) and not isinstance(error, TransientComputeError)
    assert error.status == "Failed"
    assert STUDIO.format(name="salesrisk_job_1") in str(error)
    assert "ValueError: training_data has no column amount" in str(error)
    assert "epoch 99" in error.log_tail and "epoch 10\n" not in error.log_tail  # the tail, not all
    assert len(error.log_tail.splitlines()) == jobs.LOG_TAIL_LINES
    assert "system noise" not in error.log_tail  # the user log, not the system logs
    assert workspace.submitted[0].inputs["training_data"].type == "uri_file"


def test_canceled_job_is_transient(workspace) -> None:
    workspace.scripts.append(JobScript(["Running", "Canceled"], log="killed"))
    with pytest.raises(jobs.AzureJobInterrupted) as raised:
        jobs.submit_training("anomaly", f"{LAKE}/a", None, {}, "a")
    assert isinstance(raised.value, TransientComputeError)


def test_prepare_job_returns_the_folder_of_prepared_parquet(workspace) -> None:
    workspace.scripts.append(JobScript(["Running", "Completed"]))
    result = jobs.submit_prepare(
        "win_probability",
        {"risk_evaluations": f"{LAKE}/risk_evaluations", "ml_outcomes": "azureml:ml_outcomes:3"},
        tenant_id="t1",
        partition_date="2025-06-30",
        experiment_name="prepare-training",
    )
    assert result.output_uri == f"azureml://jobs/{result.job_name}/outputs/training_prep/paths/"
    assert result.metrics == {}
    from salesrisk import storage

    assert storage.join(result.output_uri, "prepared.parquet").endswith("/paths/prepared.parquet")
    node = workspace.submitted[0]
    assert node.inputs["ml_outcomes"].path == "azureml:ml_outcomes:3"
    assert node.inputs["tenant_id"]._data == "t1"
    assert node.inputs["partition_date"]._data == "2025-06-30"
    workspace.client.jobs.download.assert_not_called()  # no metrics to fetch for preparation


def test_prepare_names_a_missing_source(workspace) -> None:
    with pytest.raises(ValueError, match="ml_outcomes"):
        jobs.submit_prepare("win_probability", {"risk_evaluations": f"{LAKE}/r"})
    workspace.client.jobs.create_or_update.assert_not_called()


def test_prepare_takes_exactly_the_model_sources(workspace) -> None:
    with pytest.raises(ValueError, match="not read by this model: ml_outcomes"):
        jobs.submit_prepare("anomaly", {"risk_evaluations": f"{LAKE}/r", "ml_outcomes": f"{LAKE}/o"})
    workspace.client.jobs.create_or_update.assert_not_called()


def test_failed_pipeline_reports_the_failed_step_log(workspace) -> None:
    workspace.scripts.append(JobScript(
        ["Running", "Failed"],
        log="pipeline orchestration log",
        children=[("prepare_1", "Completed", "ok"), ("train_1", "Failed", "Traceback\nKeyError: 'target_risk'")],
    ))
    with pytest.raises(jobs.AzureJobError) as raised:
        jobs.submit_pipeline(
            "risk_scoring", {"risk_evaluations": f"{LAKE}/r", "ml_outcomes": f"{LAKE}/o"}, {"industry_id": "retail"},
            "risk-scoring",
        )
    assert "[step train_1]" in str(raised.value) and "KeyError: 'target_risk'" in str(raised.value)
    pipeline = workspace.submitted[0]
    assert pipeline.inputs["industry_id"]._data == "retail"
    assert pipeline._validate().passed


def test_completed_pipeline_returns_training_metrics(workspace) -> None:
    workspace.scripts.append(JobScript(["Running", "Completed"], metrics={"RMSE": 0.12, "MAE": 0.09, "R2": 0.7}))
    result = jobs.submit_pipeline(
        "risk_scoring", {"risk_evaluations": f"{LAKE}/r", "ml_outcomes": f"{LAKE}/o"}, {}, "risk"
    )
    assert result.metrics == {"RMSE": 0.12, "MAE": 0.09, "R2": 0.7}
    assert result.output_uri.endswith("/outputs/model_output/paths/")


def test_register_job_model_registers_the_mlflow_output(workspace) -> None:
    first = registration.register_job_model("anomaly-detection-isolation-forest", "job_a", metrics={"F1": 0.8})
    second = registration.register_job_model("anomaly-detection-isolation-forest", "job_b")
    assert (first, second) == ("1", "2")
    model = workspace.client.models.create_or_update.call_args_list[0].args[0]
    assert model.type == "mlflow_model"
    assert model.path == "azureml://jobs/job_a/outputs/model_output/paths/model/"
    assert model.properties == {"metric.F1": "0.8"}
    assert model.tags["salesrisk.job"] == "job_a"


def test_get_ml_client_names_the_missing_setting(monkeypatch) -> None:
    for name in ("AZURE_ML_SUBSCRIPTION_ID", "AZURE_ML_RESOURCE_GROUP", "AZURE_ML_WORKSPACE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_ML_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    with pytest.raises(MissingSettingError, match="AZURE_ML_RESOURCE_GROUP, AZURE_ML_WORKSPACE_NAME"):
        azure_client.get_ml_client()


def test_get_ml_client_builds_a_workspace_client_offline(monkeypatch) -> None:
    from azure.ai.ml import MLClient

    monkeypatch.setenv("AZURE_ML_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_ML_RESOURCE_GROUP", "rg-sales")
    monkeypatch.setenv("AZURE_ML_WORKSPACE_NAME", "ws-sales")
    ml = azure_client.get_ml_client()
    assert isinstance(ml, MLClient)
    assert (ml.subscription_id, ml.resource_group_name, ml.workspace_name) == (
        "00000000-0000-0000-0000-000000000000", "rg-sales", "ws-sales"
    )


def test_lake_uris_become_azure_ml_inputs() -> None:
    assert components.data_input(f"{LAKE}/t/").type == "uri_folder"
    assert components.data_input(f"{LAKE}/t/prepared.parquet").type == "uri_file"
    assert components.data_input("azureml:risk_evaluations:3").path == "azureml:risk_evaluations:3"
    with pytest.raises(ValueError, match="storage account"):
        components.data_input("az://lake/risk_evaluations")
