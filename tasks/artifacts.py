"""What a person reads in the Prefect UI beside a run: the flows' markdown and table artifacts.

Links are absolute, to the MLflow UI at ``SALESRISK_MLFLOW_UI_URL`` (default
http://127.0.0.1:5000, where ``make ui`` serves it): a fragment link (``#/...``) clicked in
Prefect's UI would stay on Prefect's own page. Scoring URLs are POST endpoints: they are shown as
code, never as links, because a click would send a GET and get 405. A missing number is shown as
"-", never as ``nan``.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import quote

from models import gate
from salesrisk import catalog, registry
from salesrisk.settings import get_settings
from tasks.refs import ModelSummary, TrainedModel

REPORT_PATH = "report"  # models.reports.REPORT_PATH: the run's folder of report plots


# --- MLflow UI links --------------------------------------------------------------------------


def mlflow_ui() -> str:
    return get_settings().mlflow_ui


def run_url(experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """The run's page in the MLflow UI, or one of its artifacts opened there."""
    url = f"{mlflow_ui()}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{url}/artifactPath/{artifact}" if artifact else url


def model_version_url(name: str, version: str) -> str:
    return f"{mlflow_ui()}/#/models/{quote(name, safe='')}/versions/{version}"


def model_url(name: str) -> str:
    """The registered model's page: its versions and aliases."""
    return f"{mlflow_ui()}/#/models/{quote(name, safe='')}"


def mlflow_link_lines(run_id: str | None, model_name: str, version: str | None) -> list[str]:
    """Markdown lines linking the MLflow run, each report plot on it and the model version.

    Never raises: links are a convenience next to the metrics they accompany."""
    lines = []
    try:
        client = registry.client()
        if run_id:
            experiment = client.get_run(run_id).info.experiment_id
            lines.append(f"- MLflow run: [{run_id}]({run_url(experiment, run_id)})")
            plots = [a.path for a in client.list_artifacts(run_id, REPORT_PATH) if a.path.endswith(".png")]
            if plots:
                links = ", ".join(f"[{p.rsplit('/', 1)[-1]}]({run_url(experiment, run_id, p)})" for p in plots)
                lines.append(f"- report plots on the run: {links}")
        if version:
            lines.append(f"- model version: [{model_name} v{version}]({model_version_url(model_name, version)})"
                         f" (aliases and every version: [{model_name}]({model_url(model_name)}))")
    except Exception as error:  # noqa: BLE001
        lines.append(f"- MLflow run `{run_id}`; links unavailable: {type(error).__name__}: {error}")
    return lines


# --- numbers ----------------------------------------------------------------------------------


def number(value: Any, digits: int = 4) -> str:
    """A metric for a person: ``digits`` decimals, "-" when there is none (None or NaN)."""
    if value is None:
        return "-"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name}={number(value)}" for name, value in sorted(metrics.items())) or "-"


def scoring_text(scoring_url: str | None) -> str:
    """The scoring URL as code (a POST endpoint: a link would answer 405)."""
    return f"`POST {scoring_url}`" if scoring_url else "not deployed"


# --- decisions --------------------------------------------------------------------------------

CACHED_REASON = "already serving"  # tasks.evaluate's decision on an unchanged rerun


def champion_of(name: str) -> str | None:
    try:
        return registry.alias_version(name, registry.CHAMPION)
    except Exception:  # noqa: BLE001 - a registry without aliases (Azure ML) has no champion to show
        return None


def decision_label(summary: ModelSummary) -> str:
    """promoted / kept champion (blocked, with the reason) / cached / not deployed, for a person."""
    lines = [line.strip() for line in (summary.decision or "").splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if CACHED_REASON in first:
        return f"cached: v{summary.version} already serving"
    forced = first.startswith("forced promotion")
    blocking = [line for line in lines if line.endswith("-> block")]
    champion = champion_of(summary.registered_name)
    if blocking and not forced:
        kept = f"kept champion v{champion}" if champion else "nothing served"
        return f"{kept}; v{summary.version or '-'} blocked: " + "; ".join(blocking)
    if summary.version is not None and champion == str(summary.version):
        why = "forced" if forced else "first version" if first.startswith("no champion") else "not worse than the champion"
        return f"promoted v{summary.version} ({why})"
    if summary.scoring_url and champion is None:  # a backend without aliases: the endpoint tells
        return f"deployed v{summary.version}"
    return f"passed the gate, not deployed (champion v{champion or '-'})"


def decision_markdown(trained: TrainedModel, decision: gate.GateDecision) -> str:
    names = sorted(set(decision.candidate) | set(decision.champion or {}))
    rows = "\n".join(
        f"| {name} | {number(decision.candidate.get(name))} | {number((decision.champion or {}).get(name))} |"
        for name in names
    )
    verdict = "promote" if decision.promote else "keep the champion"
    reasons = "\n".join(f"- {line}" for line in decision.reason.splitlines())
    if decision.baseline_name:  # an industry model: its scores against the global model's, same rows
        names = sorted(set(decision.baseline or {}))
        rows += f"\n\n| metric | candidate | {decision.baseline_name} |\n|---|---|---|\n" + "\n".join(
            f"| {name} | {number((decision.candidate_vs_baseline or {}).get(name))} | {number((decision.baseline or {}).get(name))} |"
            for name in names
        )
    run = f"`{trained.run_id}`"
    if trained.compute == "local" and trained.run_id:
        run = next((line.removeprefix("- MLflow run: ") for line in mlflow_link_lines(trained.run_id, trained.model_name, None)
                    if line.startswith("- MLflow run: [")), run)
    return (
        f"# {trained.model_name}: {verdict}\n\n{reasons}\n\n"
        f"| metric | candidate | champion |\n|---|---|---|\n{rows}\n\n"
        f"MLflow run: {run}; training data `{trained.training_data.uri}`\n"
    )


def metrics_markdown(trained: TrainedModel, summary: ModelSummary) -> str:
    rows = "\n".join(f"| {name} | {number(value)} |" for name, value in sorted(trained.metrics.items()))
    if trained.compute == "local":  # links to the MLflow run (with its report plots) and model version
        links = "\n".join(mlflow_link_lines(trained.run_id, summary.registered_name, summary.version))
    else:  # an Azure ML run id is the job's name; its Studio page holds the run
        links = f"- MLflow run `{trained.run_id}`"
    reason = "; ".join(line.strip() for line in summary.decision.splitlines() if line.strip())
    return (
        f"# {summary.registered_name} v{summary.version or '-'}\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n\n"
        f"- decision: {decision_label(summary)}\n"
        f"- gate (champion/challenger): {reason}\n"
        f"- endpoint `{summary.endpoint_key}`: {scoring_text(summary.scoring_url)}\n"
        f"{links}\n"
    )


# --- retrain-all summary ----------------------------------------------------------------------


def headline_metrics(result: ModelSummary) -> dict[str, float]:
    """The runbook's metrics of the model (its spec's), not every per-step or backtest figure the
    trainer logs: one summary line per model stays readable; the MLflow run holds the rest."""
    names = catalog.MODELS[result.model_id].metrics if result.model_id in catalog.MODELS else ()
    chosen = {name: result.metrics[name] for name in names if name in result.metrics}
    return chosen or result.metrics


def summary_rows(results: dict[str, ModelSummary | BaseException]) -> list[dict[str, Any]]:
    """One row per model for the summary table artifact (cells are markdown)."""
    rows = []
    for model_id, result in results.items():
        if isinstance(result, BaseException):
            rows.append({"model": model_id, "version": "-", "decision": f"FAILED: {result}"[:300], "metrics": "-",
                         "endpoint": "-", "scoring URL": "-", "MLflow": "-"})
            continue
        version = result.version or "-"
        local = get_settings().compute == "local"  # an Azure ML version lives in its workspace's registry
        link = f"[v{version}]({model_version_url(result.registered_name, version)})" if result.version and local else "-"
        rows.append({
            "model": result.registered_name,
            "version": version,
            "decision": decision_label(result),
            "metrics": metrics_text(headline_metrics(result)),
            "endpoint": result.endpoint_key,
            "scoring URL": scoring_text(result.scoring_url),
            "MLflow": link,
        })
    return rows


_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


def plain(cell: Any) -> str:
    """A markdown cell for a terminal: a link becomes its URL, code its text."""
    return _LINK.sub(lambda m: m.group(2), str(cell)).replace("`", "")


TERMINAL_DECISION = 100  # characters of a decision the terminal table shows; the artifact keeps it whole


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summary for a terminal: a long gate decision is clipped (the UI's summary artifact and
    the gate artifact have it whole)."""
    headers = list(rows[0]) if rows else []
    cells = [{h: _clip(plain(r[h]), TERMINAL_DECISION) if h == "decision" else plain(r[h]) for h in headers}
             for r in rows]
    widths = {h: max(len(h), *(len(c[h]) for c in cells)) for h in headers}
    line = "  ".join(h.ljust(widths[h]) for h in headers)
    body = ["  ".join(c[h].ljust(widths[h]) for h in headers) for c in cells]
    return "\n".join([line, "  ".join("-" * widths[h] for h in headers), *body])


# --- promotion ledger -------------------------------------------------------------------------


def ledger_markdown(name: str, entries: list[registry.LedgerEntry]) -> str:
    lines = [
        f"# Promotion ledger of [{name}]({model_url(name)})",
        "",
        f"Append-only: every change of the `champion` alias. From the command line: "
        f"`python -m salesrisk.registry ledger {name}`.",
        "",
        "| # | from -> to | action | reason | metrics | flow run | at (UTC) |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        to = f"[v{e.to_version}]({model_version_url(name, e.to_version)})"
        reason = "; ".join(line.strip() for line in e.reason.splitlines() if line.strip()).replace("|", "\\|")
        lines.append(f"| {e.number} | v{e.from_version or '-'} -> {to} | {e.action} | {reason} | "
                     f"{metrics_text(e.metrics)} | `{e.flow_run or '-'}` | {e.at} |")
    return "\n".join(lines) + "\n"


def artifact_key(prefix: str, name: str) -> str:
    """Prefect artifact keys take lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{name}".lower())


def publish_ledger(name: str) -> None:
    """The model's whole ledger as a markdown artifact (a new version of the same key each time)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        markdown=ledger_markdown(name, registry.ledger(name)),
        key=artifact_key("ledger", name),
        description=f"promotion ledger of {name}",
        _sync=True,  # called from worker threads of async flows too
    )
