"""MLflow registry conventions and the artifacts a person reads, from real flow runs.

champion / challenger aliases moved by deploy and rollback, a gate decision written once, an
append-only promotion ledger (registry tags, the CLI, an artifact), and artifacts whose links are
absolute MLflow UI addresses, with no raw ``nan`` and no link to a POST-only scoring URL.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from deployments import endpoints
from flows.anomaly_detection import anomaly_detection
from flows.rollback import rollback_model
from salesrisk import registry
from tasks.artifacts import artifact_key

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

NAME = "anomaly-detection-isolation-forest"
UI = "http://127.0.0.1:5000"


def run(flow, **parameters):
    state = asyncio.run(flow(**parameters, return_state=True))
    assert state.is_completed(), state.message
    return state


def run_id(state) -> str:
    return str(state.state_details.flow_run_id)


async def _artifacts(key: str) -> list:
    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                           sort=ArtifactSort.CREATED_DESC)


def artifact_texts(key: str, flow_runs: set[str]) -> list[str]:
    """Every version of the artifact ``key`` written by ``flow_runs``, newest first.

    The Prefect API is shared by every test on this worker, and other tests run the same flow.
    """
    return [str(a.data) for a in asyncio.run(_artifacts(key)) if str(a.flow_run_id) in flow_runs]


def links(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", markdown)


def gate_tags(version: str) -> dict[str, str]:
    tags = registry.client().get_model_version(NAME, version).tags
    return {k: v for k, v in tags.items() if k.startswith("gate")}


def test_aliases_ledger_and_write_once_decisions_through_deploy_rerun_and_rollback(
    small_lake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = {run_id(run(anomaly_detection))}
    assert registry.alias_version(NAME, registry.CHAMPION) == "1"
    assert registry.alias_version(NAME, registry.CHALLENGER) == "1"
    decided = gate_tags("1")
    assert decided["gate_promote"] == "True" and "no champion" in decided["gate_reason"]
    [entry] = registry.ledger(NAME)
    assert (entry.from_version, entry.to_version, entry.action) == (None, "1", "deploy")
    assert entry.metrics and "no champion" in entry.reason and entry.flow_run and entry.at

    # Unchanged rerun: the first decision stays on version 1, the ledger gets nothing.
    ours.add(run_id(run(anomaly_detection)))
    assert gate_tags("1") == decided
    assert len(registry.ledger(NAME)) == 1

    # A forced candidate: version 2 becomes challenger, then champion; the ledger appends.
    ours.add(run_id(run(anomaly_detection, param_n_estimators=60, force=True)))
    assert registry.alias_version(NAME, registry.CHAMPION) == "2"
    assert registry.alias_version(NAME, registry.CHALLENGER) == "2"
    assert gate_tags("1") == decided
    second = registry.ledger(NAME)[-1]
    assert (second.number, second.from_version, second.to_version) == (2, "1", "2")
    assert "forced promotion" in second.reason  # after the line naming the rows it was scored on

    # Rollback moves champion back and appends; the candidate stays challenger.
    ours.add(run_id(run(rollback_model, endpoint="anomaly", reason="bad week")))
    assert endpoints.current("anomaly").version == "1"
    assert registry.alias_version(NAME, registry.CHAMPION) == "1"
    assert registry.alias_version(NAME, registry.CHALLENGER) == "2"
    ledger = registry.ledger(NAME)
    assert [(e.number, e.from_version, e.to_version, e.action) for e in ledger] == [
        (1, None, "1", "deploy"), (2, "1", "2", "deploy"), (3, "2", "1", "rollback")]
    assert ledger[-1].reason == "bad week"
    # Append-only: the first two entries read exactly as when they were written.
    assert ledger[:2] == [entry, second]

    # The CLI reads the same ledger.
    assert registry.main(["ledger", NAME, "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["from_version"], p["to_version"], p["action"]) for p in printed] == [
        (None, "1", "deploy"), ("1", "2", "deploy"), ("2", "1", "rollback")]

    # The ledger artifact (one version per change) shows the whole ledger.
    latest = artifact_texts(artifact_key("ledger", NAME), ours)[0]
    assert "bad week" in latest and "v2 -> [v1]" in latest and "v- -> [v1]" in latest

    # Artifacts a person clicks: absolute MLflow UI links, no nan, the scoring URL as text.
    metrics = artifact_texts(artifact_key("metrics", NAME), ours)
    gates = artifact_texts(artifact_key("gate", NAME), ours)
    assert metrics and gates
    for text in metrics + gates + [latest]:
        assert not re.search(r"\bnan\b", text, re.IGNORECASE), text
        for url in links(text):
            assert url.startswith(f"{UI}/#/"), url
    first_metrics = metrics[-1]  # oldest version of the key
    # the scoring URL is shown as text, never as a link (the port depends on the server in use)
    assert re.search(r"`POST http://127\.0\.0\.1:\d+/score/anomaly`", first_metrics), first_metrics
    assert "decision: promoted v1 (first version)" in first_metrics
    assert f"({UI}/#/models/{NAME}/versions/1)" in first_metrics
    assert any("decision: cached: v1 already serving" in text for text in metrics)


def test_failed_deploy_leaves_aliases_and_ledger_as_they_were(small_lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(anomaly_detection)

    def smoke_test_fails(*args, **kwargs):
        raise endpoints.DeployError("smoke request to the idle deployment failed")

    monkeypatch.setattr(endpoints, "deploy", smoke_test_fails)
    second = asyncio.run(anomaly_detection(param_n_estimators=60, force=True, return_state=True))
    assert second.is_failed()
    assert registry.alias_version(NAME, registry.CHAMPION) == "1"
    assert registry.alias_version(NAME, registry.CHALLENGER) == "1"
    assert [e.to_version for e in registry.ledger(NAME)] == ["1"]
