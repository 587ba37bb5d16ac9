"""Monitoring tasks: check an endpoint, act on a breach, keep the history, publish the report.

The checks themselves are in ``models/monitoring*.py``; these tasks add what only the
orchestration layer knows: what an endpoint serves now, the Prefect artifacts and logs, and the
actions (roll back through ``deployments.endpoints``, or start the model's retraining deployment).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from deployments import endpoints
from models import monitoring, monitoring_data, reports
from models.monitoring import EndpointCheck
from salesrisk import catalog, registry
from salesrisk.settings import get_settings
from tasks import artifacts
from tasks.promote import record_serving

MONITORING_EXPERIMENT = "model-monitoring"
HISTORY_DAYS = 90  # drawn in the drift-over-time plot
REPORT_KEY = "monitoring-report"


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys take lowercase letters, digits and dashes only."""
    return "-".join(parts).lower().replace("_", "-").replace("/", "-")  # an industry slot has a '/'


# --- check ------------------------------------------------------------------------------------


def run_check(endpoint_key: str, lake: str, now: datetime) -> EndpointCheck:
    settings = get_settings()
    live = endpoints.current(endpoint_key)
    if live is None:
        return EndpointCheck(endpoint_key, status="not deployed", notes=["nothing deployed on this endpoint"])
    return monitoring_data.check_endpoint(
        endpoint_key,
        live.model_name,
        live.version,
        lake,
        monitoring.Thresholds.from_settings(settings),
        now=now,
        window_days=settings.monitor_window_days,
        outcome_days=settings.monitor_outcome_days,
    )


@task(name="check-endpoint", task_run_name="check {endpoint_key}", cache_policy=NO_CACHE)
async def check_endpoint(endpoint_key: str, lake: str, now: datetime) -> EndpointCheck:
    check = await asyncio.to_thread(run_check, endpoint_key, lake, now)
    logger = get_run_logger()
    if check.status != "checked":
        logger.info("%s: %s", endpoint_key, check.status)
    else:
        logger.info("%s: %s v%s, %d logged rows, %d breach(es)", endpoint_key, check.model_name, check.version,
                    check.window_rows, len(check.breaches))
    return check


# --- act --------------------------------------------------------------------------------------


def breach_markdown(check: EndpointCheck, action: str) -> str:
    lines = "\n".join(f"| {b['kind']} | {b['metric']} | {b['value']:.4f} | {b['threshold']:g} |" for b in check.breaches)
    return (
        f"# Monitoring breach: `{check.endpoint_key}` ({check.model_name} v{check.version})\n\n"
        f"| kind | metric | value | threshold |\n|---|---|---|---|\n{lines}\n\n"
        + "\n".join(f"- {b['message']}" for b in check.breaches)
        + f"\n\nConfigured action (SALESRISK_MONITOR_ACTIONS): **{action}**. "
        "Rollback path: docs/rollback.md.\n"
    )


def rollback(check: EndpointCheck) -> str:
    reason = "monitor-models: " + "; ".join(b["message"] for b in check.breaches)
    try:
        result = endpoints.rollback(check.endpoint_key, None, reason[:500])
    except endpoints.DeployError as error:
        return f"rollback refused: {error}"
    record_serving(result, "rollback", reason[:500])  # champion alias and promotion ledger follow
    return f"rolled back to {result.model_name} v{result.version} (was v{result.previous_version})"


async def trigger_retraining(check: EndpointCheck, model_id: str) -> str:
    """Start the model's ``<flow>/default`` deployment without waiting for it; when there is no
    such deployment (no server, or ``prefect deploy`` not run), say why instead of failing."""
    from prefect.deployments import arun_deployment

    spec = catalog.MODELS[model_id]
    name = f"{spec.flow_name}/default"  # the model's deployment in prefect.yaml
    parameters: dict[str, Any] = {}
    industry = catalog.industry_of_model(model_id, check.model_name) if check.model_name else None
    if catalog.split_slot(check.endpoint_key)[0] == spec.industry_endpoint_key and industry:
        parameters[catalog.INDUSTRY_ID] = industry
    try:
        run = await arun_deployment(name=name, parameters=parameters or None, timeout=0)
    except Exception as error:  # noqa: BLE001 - no API, no deployment, no work pool: report, do not fail
        return (
            f"retraining not triggered: deployment {name!r} could not be run ({type(error).__name__}: {error}); "
            "start a Prefect server, `prefect deploy --all` and a worker (docs/runbook.md section 3)"
        )
    return f"triggered retraining: deployment {name}, flow run {run.name} ({run.id})"


@task(name="act-on-breach", task_run_name="act on {check.endpoint_key}", cache_policy=NO_CACHE)
async def act_on_breach(check: EndpointCheck, act: bool = True) -> EndpointCheck:
    """Warn, leave a breach artifact, then run the configured action (none, retrain, rollback)."""
    logger = get_run_logger()
    model_id = monitoring_data.model_id_of(check.endpoint_key)
    action = monitoring.resolve_action(get_settings().monitor_actions, check.endpoint_key, model_id)
    logger.warning("%s (%s v%s) breached: %s; action: %s", check.endpoint_key, check.model_name, check.version,
                   "; ".join(b["message"] for b in check.breaches), action)
    await create_markdown_artifact(
        markdown=breach_markdown(check, action),
        key=artifact_key("monitoring-breach", check.endpoint_key),
        description=f"monitoring breach of {check.endpoint_key}",
    )
    check.action = action
    if not act:
        check.action_result = "not run: actions switched off (--no-act)"
    elif action == "rollback":
        check.action_result = await asyncio.to_thread(rollback, check)
    elif action == "retrain":
        check.action_result = await trigger_retraining(check, model_id)
    else:
        check.action_result = "none configured"
    if check.action_result.startswith(("rollback refused", "retraining not triggered")):
        logger.warning("%s: %s", check.endpoint_key, check.action_result)
    else:
        logger.info("%s: %s", check.endpoint_key, check.action_result)
    return check


# --- record and report ------------------------------------------------------------------------


def _metric_name(*parts: str) -> str:
    return ".".join(p.replace(":", "_") for p in parts)


def log_monitoring_run(checks: list[EndpointCheck], png: Path, markdown: str, now: datetime) -> tuple[str, str]:
    """One MLflow run per monitoring run in experiment ``model-monitoring``: PSI and live metrics
    as metrics, the drift plot and the report as artifacts (the MLflow UI shows the PNG)."""
    import mlflow

    registry.configure()
    experiment = registry.experiment_id(MONITORING_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment, run_name=f"monitor-models {now:%Y-%m-%d %H:%M}") as run:
        metrics: dict[str, float] = {}
        for check in checks:
            for drift in check.drift:
                metrics[_metric_name(check.endpoint_key, "psi", drift["feature"])] = drift["psi"]
            for name, value in check.performance.items():
                metrics[_metric_name(check.endpoint_key, name)] = value
            metrics[_metric_name(check.endpoint_key, "breaches")] = float(len(check.breaches))
        mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
        mlflow.set_tags({"breached": ",".join(c.endpoint_key for c in checks if c.breached) or "none"})
        mlflow.log_artifact(str(png))
        mlflow.log_text(markdown, "monitoring_report.md")
        return run.info.run_id, artifacts.run_url(experiment, run.info.run_id)


def report_markdown(checks: list[EndpointCheck], png_uri: str, now: datetime, thresholds: monitoring.Thresholds) -> str:
    rows = []
    for c in checks:
        drifted = [d["feature"] for d in c.drift if d["drifted"]]
        max_psi = max((d["psi"] for d in c.drift), default=math.nan)
        perf = ", ".join(f"{k} {v:.4g}" for k, v in c.performance.items() if k != "rows") or "-"
        served = f"{c.model_name} v{c.version}" if c.model_name else c.status
        drift = f"{len(drifted)}/{len(c.drift)} (max PSI {max_psi:.3f})" if c.drift else "-"
        rows.append(
            f"| `{c.endpoint_key}` | {served} | {c.window_rows} | {drift} | {perf} | "
            f"{'**' + str(len(c.breaches)) + '**' if c.breaches else 0} | {c.action if c.breaches else '-'} |"
        )
    details = []
    for c in checks:
        if c.status != "checked":
            continue
        part = [f"## `{c.endpoint_key}`: {c.model_name} v{c.version}", f"Reference: {c.reference_source}"]
        if c.drift:
            table = ["| feature | PSI | KS statistic | KS p-value | drifted |", "|---|---|---|---|---|"]
            table += [
                f"| {d['feature']} | {d['psi']:.4f} | {d['ks_statistic']:.4f} | {d['ks_pvalue']:.3g} | {'**yes**' if d['drifted'] else 'no'} |"
                for d in c.drift
            ]
            part.append("\n".join(table))
        bullets = [f"- breach: {b['message']}" for b in c.breaches]
        if c.breaches:
            bullets.append(f"- action `{c.action}`: {c.action_result}")
        bullets += [f"- {note}" for note in c.notes]
        if bullets:
            part.append("\n".join(bullets))
        details.append("\n\n".join(part))
    return (
        f"# Model monitoring {now:%Y-%m-%d %H:%M} UTC\n\n"
        "| endpoint | serving | logged rows | drifted features | live performance | breaches | action |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Thresholds: PSI >= {thresholds.psi:g} with KS p < {thresholds.ks_pvalue:g}; Brier > {thresholds.brier_max:g}; "
        f"AUC_ROC < {thresholds.auc_min:g}; risk RMSE > {thresholds.risk_rmse_max:g}; MAPE > {thresholds.mape_max:g}%; "
        f"judged on >= {thresholds.min_rows} rows (docs/model-monitoring.md).\n\n"
        f"Drift over time: `{png_uri}`\n\n" + "\n\n".join(details) + "\n"
    )


def record(checks: list[EndpointCheck], lake: str, now: datetime) -> dict[str, str]:
    settings = get_settings()
    thresholds = monitoring.Thresholds.from_settings(settings)
    monitoring_data.append_history(lake, monitoring.history_frame(checks, now), now)
    history = monitoring_data.read_history(lake, now - timedelta(days=HISTORY_DAYS))
    with tempfile.TemporaryDirectory(prefix="salesrisk-monitor-") as tmp:
        png = Path(tmp, monitoring_data.DRIFT_PNG)
        png_uri = monitoring_data.write_drift_png(lake, history, thresholds.psi, png)
        markdown = report_markdown(checks, png_uri, now, thresholds)
        run_id, link = log_monitoring_run(checks, png, markdown, now)
    return {"markdown": markdown + f"\nMLflow run `{run_id}` ({link}): metrics, drift_over_time.png, this report.\n",
            "png": png_uri, "mlflow_run_id": run_id}


@task(name="monitoring-report", cache_policy=NO_CACHE)
async def publish_report(checks: list[EndpointCheck], lake: str, now: datetime) -> dict[str, str]:
    """Append this run to the history, draw drift over time, log the MLflow run, publish the
    ``monitoring-report`` markdown artifact."""
    recorded = await asyncio.to_thread(record, checks, lake, now)
    recorded["artifact_id"] = str(
        await create_markdown_artifact(markdown=recorded["markdown"], key=REPORT_KEY, description="model monitoring report")
    )
    get_run_logger().info("monitoring report: %s; drift plot %s", REPORT_KEY, recorded["png"])
    return recorded
