"""A trainer's ``--deploy`` goes through the flows' gate, lock and register+deploy transaction
(flows/promote_trained.py), not around them; ``--register`` only registers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models import synthetic
from salesrisk import catalog, registry

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

ROOT = Path(__file__).resolve().parents[2]


def anomaly_input(tmp_path: Path) -> Path:
    from models import prepare

    lake = tmp_path / "toy-lake"
    synthetic.generate(str(lake), n_opportunities=600, tenants=1, seed=3)
    out = tmp_path / "prepared"
    prepare.prepare("anomaly", risk_evaluations=str(lake / catalog.RISK_EVALUATIONS),
                    ml_outcomes=str(lake / catalog.ML_OUTCOMES), output=str(out))
    return out / prepare.PREPARED_FILE


def train(data: Path, output: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "models.anomaly", "--training-data", str(data), "--output", str(output), *flags]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_trainer_deploy_is_gated_and_transactional(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL

    from deployments import endpoints

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the flow uses the session's API

    data = anomaly_input(isolated)
    name = catalog.registered_name("anomaly")

    first = train(data, isolated / "run1", "--deploy")
    assert first.returncode == 0, first.stderr[-3000:]
    live = endpoints.current("anomaly")
    assert live is not None and (live.model_name, live.version) == (name, "1")
    tags = registry.client().get_model_version(name, "1").tags
    assert tags["gate_promote"] == "True" and "no champion" in tags["gate_reason"]

    second = train(data, isolated / "run2", "--deploy", "--seed", "7")
    assert second.returncode == 0, second.stderr[-3000:]
    tags = registry.client().get_model_version(name, "2").tags
    assert any(key.startswith("gate.champion.") for key in tags), tags  # judged against version 1
    assert endpoints.current("anomaly").version == ("2" if tags["gate_promote"] == "True" else "1")

    third = train(data, isolated / "run3", "--register", "--seed", "8")
    assert third.returncode == 0, third.stderr[-3000:]
    assert registry.client().get_model_version(name, "3").tags.get("model_id") == "anomaly"
    assert endpoints.current("anomaly").version in ("1", "2")  # registering alone never deploys
