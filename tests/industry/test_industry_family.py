"""retrain-all trains the risk-scoring family (global + one model per industry with enough closed
deals), records each industry model's decision against the global model, and
``risk_scoring_industry`` routes each row over HTTP: its industry's model where one serves, the
global model for every other industry."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import polars as pl
import pytest

from flows.model_flow import flow_for
from flows.retrain_all import retrain_all
from salesrisk import catalog, registry, storage
from salesrisk.settings import get_settings
from tests.conformance.steps import FAST_PARAMS
from tests.serving.conftest import free_port, start_server, stop_server

pytestmark = pytest.mark.usefixtures("prefect_api")

FAMILY = next(spec for spec in catalog.MODELS.values() if spec.industry_name)
FAST = FAST_PARAMS.get(FAMILY.model_id, {})  # the family and its routing are the point, not the fits
# The small lake's closed deals: software 221, finance 143, healthcare 124, ... energy 70.
MIN_CLOSED_DEALS = 140
TRAINED = ("software", "finance")
UNTRAINED = "energy"
ROW = {"amount": 42000.0, "probability": 0.45, "days_to_close": 30.0, "stage_encoded": 2.0, "industry_encoded": 1.0,
       "days_since_last_activity": 5.0, "activity_count_30d": 7.0, "stakeholder_count": 3.0}


def test_family_is_trained_gated_against_global_and_rows_are_routed_by_industry(
    small_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("SALESRISK_SERVE_PORT", str(port))
    server = start_server(port, log_name="industry-family-server.log")
    try:
        rows = asyncio.run(retrain_all(models=[FAMILY.model_id], min_closed_deals=MIN_CLOSED_DEALS,
                                       trainer_options_by_model={FAMILY.model_id: FAST}))
        names = [catalog.registered_name(FAMILY.model_id, i) for i in TRAINED]
        assert [r["model"] for r in rows] == [FAMILY.registered_name, *names]  # only industries over the line
        client = registry.client()
        for name in names:  # each industry model's decision against the global model is recorded
            tags = client.get_model_version(name, "1").tags
            assert tags["gate.baseline"] == f"{FAMILY.registered_name} v1"
            assert {f"gate.baseline.{m}" for m in FAMILY.directions} <= set(tags)
            row = next(r for r in rows if r["model"] == name)
            assert (row["scoring URL"] != "not deployed") == (tags["gate_promote"] == "True")

        # Whatever the gate decided, put both industry models on their slots (train is a cache hit):
        # the routing below needs two industries served.
        for industry in TRAINED:
            asyncio.run(flow_for(FAMILY.model_id)(**{catalog.INDUSTRY_ID: industry}, force=True, trainer_options=FAST))

        headers = server.headers()
        routed = httpx.get(f"{server.url}/endpoints", headers=headers, timeout=30).json()["endpoints"][FAMILY.industry_endpoint_key]
        assert routed["fallback"]["model_name"] == FAMILY.registered_name
        assert {i: d["model_name"] for i, d in routed["industries"].items()} == dict(zip(TRAINED, names))

        industries = [TRAINED[0], UNTRAINED, TRAINED[1], TRAINED[0]]
        body = {"input_data": {"columns": [*ROW, catalog.INDUSTRY_ID],
                               "data": [[*ROW.values(), industry] for industry in industries]}}
        request_id = uuid.uuid4().hex
        response = httpx.post(f"{server.url}/score/{FAMILY.industry_endpoint_key}", json=body,
                              headers={**headers, "x-request-id": request_id}, timeout=60)
        assert response.status_code == 200, response.text
        answered = response.json()
        expected = [catalog.registered_name(FAMILY.model_id, i) if i in TRAINED else FAMILY.registered_name for i in industries]
        assert [r["model_name"] for r in answered] == expected
        assert all(r["model_version"] and isinstance(r["risk_score"], float) for r in answered)
        # each model's rows are logged as its batch: industry models under the industry endpoint, the
        # fallback's under the global model's endpoint, where the global model's monitoring reads
        logged = _logged(request_id, batches=len(TRAINED) + 1)
        assert dict(zip(logged["model_name"], logged["endpoint"])) == {
            **{name: FAMILY.industry_endpoint_key for name in names}, FAMILY.registered_name: FAMILY.endpoint_key}
        assert dict(zip(logged["model_name"], logged["rows"])) == {names[0]: 2, names[1]: 1, FAMILY.registered_name: 1}
        # the untrained industry's row is scored exactly as the global endpoint scores it
        alone = httpx.post(f"{server.url}/score/{FAMILY.endpoint_key}", json={"input_data": {
            "columns": body["input_data"]["columns"], "data": [body["input_data"]["data"][1]]}}, headers=headers, timeout=60)
        assert alone.status_code == 200 and alone.json()[0]["risk_score"] == answered[1]["risk_score"]
    finally:
        stop_server(server)


def _logged(request_id: str, batches: int, timeout: float = 30.0) -> pl.DataFrame:
    """The inference-log rows of one request, once all its batches are written (the log is async)."""
    uri = storage.join(get_settings().lake, catalog.ML_INFERENCE_LOGS)
    deadline = time.monotonic() + timeout
    rows = pl.DataFrame()
    while time.monotonic() < deadline:
        if storage.exists(uri) and storage.list_parquet(uri):  # its folder exists before its first file
            rows = storage.scan_dataset(uri, hive_schema={"endpoint": pl.String, "date": pl.Date}).filter(
                pl.col("request_id") == request_id).collect()
            if rows.height >= batches:
                return rows
        time.sleep(0.2)
    raise AssertionError(f"request {request_id}: {rows.height} of {batches} batches in {uri} after {timeout} s")
