"""Flow `monitor-models`: drift and live performance of every deployed model; warn and act on a breach."""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from deployments import endpoints as deployed
from salesrisk import catalog
from salesrisk.settings import get_settings
from tasks.monitor import act_on_breach, check_endpoint, publish_report


@flow(name="monitor-models")
async def monitor_models(
    endpoints: list[str] = list(catalog.ENDPOINT_KEYS),
    lake: str | None = None,
    act: bool = True,
) -> list[dict[str, Any]]:
    """Compare each deployed model's live inputs with its training data (PSI, KS) and its logged
    predictions with the outcomes that arrived (Brier, AUC_ROC, RMSE, MAPE); on a breach leave an
    artifact, log a warning and run the model's action from SALESRISK_MONITOR_ACTIONS.

    Thresholds are the SALESRISK_MONITOR_* settings (docs/model-monitoring.md); --no-act only reports.
    """
    unknown = [key for key in endpoints if not _known(key)]
    if unknown:
        raise ValueError(f"endpoints={unknown}: expected endpoint keys from {', '.join(catalog.ENDPOINT_KEYS)}")
    endpoints = with_industry_slots(endpoints)
    lake = lake or get_settings().lake
    now = datetime.now(timezone.utc)
    checks = [await check_endpoint(key, lake, now) for key in endpoints]
    checks = [await act_on_breach(check, act) if check.breached else check for check in checks]
    await publish_report(checks, lake, now)
    return [check.as_dict() for check in checks]


def _known(key: str) -> bool:
    try:
        deployed.check_key(key)
    except deployed.DeployError:
        return False
    return True


def with_industry_slots(keys: list[str]) -> list[str]:
    """An industry endpoint stands for each of its deployed industry slots: every industry model is
    checked against its own training data and outcomes, and acted on alone."""
    expanded: list[str] = []
    for key in keys:
        if catalog.is_industry_endpoint(key):
            expanded += [catalog.industry_slot(key, industry) for industry in deployed.industry_slots(key)] or [key]
        else:
            expanded.append(key)
    return list(dict.fromkeys(expanded))


def render(results: list[dict[str, Any]]) -> str:
    """One line per endpoint for the command line."""
    lines = []
    for r in results:
        served = f"{r['model_name']} v{r['version']}" if r["model_name"] else r["status"]
        outcome = f"{len(r['breaches'])} breach(es), {r['action']}: {r['action_result']}" if r["breaches"] else "ok"
        lines.append(f"{r['endpoint_key']:<24} {served:<40} {outcome}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(cli.main(monitor_models, render=render))
