"""The endpoint server over real HTTP on 127.0.0.1 (a ``python -m deployments.serve`` subprocess)."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import mlflow.pyfunc
import numpy as np
import polars as pl
import pytest

from deployments import endpoint_map, endpoints
from deployments.local import state as st
from salesrisk import catalog, storage
from salesrisk.settings import get_settings


pytestmark = pytest.mark.slow  # trains real models and starts servers

def split_body(frame) -> dict:
    split = json.loads(frame.to_json(orient="split", date_format="iso", index=False))
    return {"input_data": {"columns": split["columns"], "data": split["data"]}}


def records_body(frame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def test_health_and_openapi_need_no_key(server):
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["state_id"] == st.state_id(st.state_path())
    spec = httpx.get(f"{server.url}/openapi.json").json()
    operation = spec["paths"]["/score/{key}"]["post"]
    assert "input_data" in json.dumps(operation["requestBody"])
    assert {"401", "413", "422"} <= set(operation["responses"])
    assert spec["components"]["securitySchemes"]["endpointKey"]["scheme"] == "bearer"


@pytest.mark.parametrize("key", catalog.ENDPOINT_KEYS)
def test_each_key_scores_a_sample_in_both_request_shapes(deployed, server, key):
    reg = deployed[key]
    live = endpoints.current(key)
    expected = np.asarray(mlflow.pyfunc.load_model(st.load().endpoints[key].deployments[live.colour].path).predict(reg.sample))

    for body in (split_body(reg.sample), records_body(reg.sample)):
        response = httpx.post(f"{server.url}/score/{key}", json=body, headers=server.headers())
        assert response.status_code == 200, response.text
        assert response.headers["x-model-version"] == live.version
        assert response.headers["azureml-model-deployment"] == live.colour
        rows = response.json()
        assert len(rows) == len(reg.sample)
        got = np.array([list(row.values())[0] for row in rows], dtype=float)
        np.testing.assert_allclose(got, expected.astype(float).ravel(), rtol=1e-9)


@pytest.mark.parametrize("key", catalog.ENDPOINT_KEYS)
def test_each_key_accepts_the_top_factors_switch(deployed, server, key):
    """``"params": {"top_factors": false}`` is accepted everywhere; a model without factors ignores it."""
    reg = deployed[key]
    plain = httpx.post(f"{server.url}/score/{key}", json=split_body(reg.sample), headers=server.headers())
    switched = httpx.post(f"{server.url}/score/{key}", json={**split_body(reg.sample), "params": {"top_factors": False}},
                          headers=server.headers())
    assert plain.status_code == switched.status_code == 200, switched.text
    assert switched.json() == plain.json()


def test_wrong_or_missing_key_gets_401(deployed, server):
    body = split_body(deployed["anomaly"].sample)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": server.key}):
        response = httpx.post(f"{server.url}/score/anomaly", json=body, headers=headers)
        assert response.status_code == 401
        assert "Bearer" in response.json()["detail"] and response.headers["www-authenticate"].startswith("Bearer")
        assert server.key not in response.text
    assert httpx.get(f"{server.url}/endpoints").status_code == 401
    assert server.key not in server.log_text()


def test_unknown_endpoint_and_deployment_get_404(deployed, server):
    response = httpx.post(f"{server.url}/score/nope", json=[{"a": 1}], headers=server.headers())
    assert response.status_code == 404 and "win_probability" in response.json()["detail"]
    response = httpx.post(
        f"{server.url}/score/anomaly", json=split_body(deployed["anomaly"].sample),
        headers=server.headers(**{"azureml-model-deployment": "purple"}),
    )
    assert response.status_code == 404 and "purple" in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"rows": []}', 400, "input_data"),
        (b'{"input_data": {"columns": "amount", "data": []}}', 400, "columns must be a list"),
        (b'{"input_data": {"columns": [], "data": []}}', 400, "no rows"),
        (b'"a string"', 400, "unrecognised body"),
        (json.dumps({"input_data": {"columns": list(catalog.WIN_PROBABILITY_FEATURES), "data": [1, 2]}}).encode(),
         400, "values, one per column"),
    ],
)
def test_malformed_bodies_get_400_with_a_message(deployed, server, content, status, message):
    response = httpx.post(f"{server.url}/score/win_probability", content=content, headers=server.headers())
    assert response.status_code == status and message in response.json()["detail"]


def test_wrong_columns_and_values_get_422_naming_them(deployed, server):
    sample = deployed["win_probability"].sample
    body = split_body(sample.rename(columns={"amount": "amt"}))
    response = httpx.post(f"{server.url}/score/win_probability", json=body, headers=server.headers())
    assert response.status_code == 422
    assert "'amount'" in response.json()["detail"] and "'amt'" in response.json()["detail"]

    records = records_body(sample)
    del records[1]["stakeholder_count"]
    response = httpx.post(f"{server.url}/score/win_probability", json=records, headers=server.headers())
    assert response.status_code == 422 and "stakeholder_count" in response.json()["detail"]

    body = split_body(sample)
    body["input_data"]["data"][2][3] = "high"
    response = httpx.post(f"{server.url}/score/win_probability", json=body, headers=server.headers())
    assert response.status_code == 422 and "'stage_encoded' row 2" in response.json()["detail"]

    body = split_body(sample)
    body["input_data"]["data"][0] = body["input_data"]["data"][0][:5]
    response = httpx.post(f"{server.url}/score/win_probability", json=body, headers=server.headers())
    assert response.status_code == 400 and "8 values" in response.json()["detail"]

    body = split_body(deployed["revenue_forecasting"].sample)
    body["input_data"]["data"][0][0] = "not a date"
    response = httpx.post(f"{server.url}/score/revenue_forecasting", json=body, headers=server.headers())
    assert response.status_code == 422 and "'ds'" in response.json()["detail"]


def test_oversized_bodies_and_row_counts_get_413(deployed, server):
    big = b"[" + b" " * (17 * 1024 * 1024) + b"]"
    response = httpx.post(f"{server.url}/score/win_probability", content=big, headers=server.headers())
    assert response.status_code == 413 and "limit" in response.json()["detail"]

    sample = deployed["win_probability"].sample
    body = {"input_data": {"columns": list(sample.columns), "data": [sample.iloc[0].tolist()] * 10_001}}
    response = httpx.post(f"{server.url}/score/win_probability", json=body, headers=server.headers())
    assert response.status_code == 413 and "10000 rows" in response.json()["detail"]

    def chunks():
        for _ in range(40):
            yield b" " * (512 * 1024)

    response = httpx.post(f"{server.url}/score/win_probability", content=chunks(), headers=server.headers())
    assert response.status_code == 413


def test_endpoints_lists_live_deployment_version_and_traffic(deployed, server):
    listing = httpx.get(f"{server.url}/endpoints", headers=server.headers()).json()["endpoints"]
    assert set(listing) == set(catalog.ENDPOINT_KEYS)
    for key in catalog.ENDPOINT_KEYS:
        live = endpoints.current(key)
        entry = listing[key]
        assert entry["live"] == live.colour and entry["traffic"][live.colour] == 100
        described = entry["deployments"][live.colour]
        assert {k: described[k] for k in ("model_name", "version", "state")} == {
            "model_name": live.model_name, "version": live.version, "state": "ready"}
        assert entry["scoring_url"] == live.scoring_url
        # every input column with its type, and a request example that scores as it is
        columns = [c["name"] for c in described["inputs"]]
        assert columns == list(deployed[key].sample.columns) and all(c["type"] for c in described["inputs"])
        assert described["example"]["input_data"]["columns"] == columns
        response = httpx.post(entry["scoring_url"], json=described["example"], headers=server.headers())
        assert response.status_code == 200, (key, response.text)


class RequestLoop:
    """Sequential requests until stopped (bounded by count and time); records status and version."""

    def __init__(self, server, key, body, *, max_requests=20_000, max_seconds=120.0):
        self.seen: list[tuple[int, str | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server, key, body, max_requests, max_seconds))

    def _run(self, server, key, body, max_requests, max_seconds):
        deadline = time.monotonic() + max_seconds
        with httpx.Client(headers=server.headers(), timeout=30) as client:
            while not self._stop.is_set() and len(self.seen) < max_requests and time.monotonic() < deadline:
                try:
                    r = client.post(f"{server.url}/score/{key}", json=body)
                    self.seen.append((r.status_code, r.headers.get("x-model-version")))
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))

    def __enter__(self):
        self._thread.start()
        while not self.seen and not self.errors and self._thread.is_alive():
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)


def test_promotion_and_rollback_under_a_request_loop_fail_no_request(deployed, server):
    win = deployed["win_probability"]
    before = endpoints.current("win_probability")
    target = win.versions[1] if before.version != win.versions[1] else win.versions[0]

    with RequestLoop(server, "win_probability", split_body(win.sample)) as loop:
        promoted = endpoints.deploy("win_probability", win.name, target)
        after_deploy = len(loop.seen)
        time.sleep(0.3)
        before_rollback = len(loop.seen)
        rolled = endpoints.rollback("win_probability", reason="test: previous was better")
        after_rollback = len(loop.seen)
        time.sleep(0.3)

    assert not loop.errors and {status for status, _ in loop.seen} == {200}, loop.seen[-5:]
    assert promoted.version == target and promoted.previous_version == before.version
    assert rolled.version == before.version and rolled.colour == before.colour
    versions = [v for _, v in loop.seen]
    # once deploy() returned, the new version serves; once rollback() returned, the previous one does
    assert set(versions[after_deploy + 1 : before_rollback]) == {target}
    assert set(versions[after_rollback + 1 :]) == {before.version}
    assert versions[0] == before.version and len(versions) > after_rollback + 1
    response = httpx.post(f"{server.url}/score/win_probability", json=split_body(win.sample), headers=server.headers())
    assert response.headers["x-model-version"] == before.version
    history = st.load().endpoints["win_probability"].history
    assert history[-1]["action"] == "rollback" and history[-1]["reason"] == "test: previous was better"


def test_deploy_failing_its_http_smoke_test_leaves_traffic_on_the_old_colour(deployed, server):
    win = deployed["win_probability"]
    before = endpoints.current("win_probability")
    standby_before = st.load().endpoints["win_probability"].deployments.get("green" if before.colour == "blue" else "blue")

    with RequestLoop(server, "win_probability", split_body(win.sample)) as loop:
        with pytest.raises(endpoints.DeployError, match="HTTP 500"):
            endpoints.deploy("win_probability", win.name, win.versions[2])

    assert {status for status, _ in loop.seen} == {200} and {v for _, v in loop.seen} == {before.version}
    assert endpoints.current("win_probability") == before
    ep = st.load().endpoints["win_probability"]
    assert ep.deployments.get(st.other(before.colour)) == standby_before
    assert ep.history[-1]["action"] == "deploy-failed"


def test_deploy_writes_the_endpoint_map(deployed, server):
    mapping = endpoint_map.read(get_settings().endpoint_map)
    assert mapping == {key: f"{server.url}/score/{key}" for key in catalog.ENDPOINT_KEYS}


def _logged(key: str, request_id: str, timeout: float = 20.0) -> pl.DataFrame:
    uri = storage.join(get_settings().lake, catalog.ML_INFERENCE_LOGS)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if storage.exists(uri) and storage.list_parquet(uri):  # its folder exists before its first file
            rows = storage.scan_parquet(uri).filter(pl.col("request_id") == request_id).collect()
            if rows.height:
                return rows
        time.sleep(0.1)
    raise AssertionError(f"request {request_id} not in {uri} after {timeout} s")


def test_scored_batches_are_logged_to_the_lake(deployed, server):
    reg = deployed["revenue_forecasting"]
    request_id = uuid.uuid4().hex
    response = httpx.post(
        f"{server.url}/score/revenue_forecasting", json=records_body(reg.sample),
        headers=server.headers(**{"x-request-id": request_id}),
    )
    assert response.status_code == 200

    row = _logged("revenue_forecasting", request_id).row(0, named=True)
    live = endpoints.current("revenue_forecasting")
    assert (row["endpoint"], row["model_name"], row["model_version"]) == ("revenue_forecasting", live.model_name, live.version)
    assert row["deployment"] == live.colour and row["rows"] == len(reg.sample)
    assert str(row["date"]) == row["logged_at"].date().isoformat()
    inputs = json.loads(row["inputs"])
    assert [r["ds"][:10] for r in inputs] == [d.date().isoformat() for d in reg.sample["ds"]]
    assert json.loads(row["outputs"]) == response.json()


def test_identifiers_sent_beside_the_features_are_logged_not_scored(deployed, server):
    sample = deployed["win_probability"].sample
    ids = [f"opp-{i}" for i in range(len(sample))]
    split = split_body(sample.assign(opportunity_id=ids))
    records = records_body(sample.assign(opportunity_id=ids, tenant_id="t1"))
    request_ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    for body, request_id in zip((split, records), request_ids):
        response = httpx.post(
            f"{server.url}/score/win_probability", json=body, headers=server.headers(**{"x-request-id": request_id})
        )
        assert response.status_code == 200 and len(response.json()) == len(sample)
    split_logged = json.loads(_logged("win_probability", request_ids[0])["inputs"][0])
    records_logged = json.loads(_logged("win_probability", request_ids[1])["inputs"][0])
    assert [r["opportunity_id"] for r in split_logged] == ids and "tenant_id" not in split_logged[0]
    assert [r["opportunity_id"] for r in records_logged] == ids and records_logged[0]["tenant_id"] == "t1"
    assert records_logged[0]["amount"] == pytest.approx(sample["amount"][0])


def test_shutdown_flushes_pending_inference_logs(deployed, server, extra_server):
    reg = deployed["win_probability"]
    second = extra_server("--log-flush-seconds", "600", log_name="server-shutdown.log")
    request_id = uuid.uuid4().hex
    response = httpx.post(
        f"{second.url}/score/win_probability", json=split_body(reg.sample),
        headers=second.headers(**{"x-request-id": request_id}),
    )
    assert response.status_code == 200
    second.process.send_signal(signal.SIGINT)
    assert second.process.wait(60) == 0, second.log_text()
    rows = _logged("win_probability", request_id, timeout=1.0)
    assert rows.height == 1 and rows["rows"][0] == len(reg.sample)
    assert [r["amount"] for r in json.loads(rows["inputs"][0])] == pytest.approx(reg.sample["amount"].tolist())


def test_nulls_score_as_missing_values(deployed, server):
    body = split_body(deployed["win_probability"].sample)
    body["input_data"]["data"][0][1] = None
    response = httpx.post(f"{server.url}/score/win_probability", json=body, headers=server.headers())
    assert response.status_code == 200 and len(response.json()) == len(deployed["win_probability"].sample)


def test_documented_route_answers_like_the_fast_path(deployed, server):
    """The FastAPI route in the OpenAPI document runs the same service as the ASGI fast path."""
    import uvicorn

    from deployments.local import keys
    from deployments.serve.app import ServeConfig, create_app
    from tests.serving.conftest import free_port

    settings = get_settings()
    port = free_port()
    config = ServeConfig(st.state_path(), settings.lake, keys.endpoint_key(), f"http://127.0.0.1:{port}", log_flush_seconds=0.2)
    documented_only = create_app(config).app  # FastAPI without the fast path in front
    uv = uvicorn.Server(uvicorn.Config(documented_only, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not uv.started and time.monotonic() < deadline:
            time.sleep(0.05)
        body = split_body(deployed["anomaly"].sample)
        fast = httpx.post(f"{server.url}/score/anomaly", json=body, headers=server.headers())
        documented = httpx.post(f"{config.base_url}/score/anomaly", json=body, headers=server.headers())
        refused = httpx.post(f"{config.base_url}/score/anomaly", json=body)
    finally:
        uv.should_exit = True
        thread.join(30)
    assert documented.status_code == 200 and documented.json() == fast.json()
    assert documented.headers["x-model-version"] == fast.headers["x-model-version"]
    assert refused.status_code == 401


def test_a_slow_model_is_scored_off_the_event_loop(deployed, server):
    """While a slow model's request is held inside predict, the server still answers others."""
    import mlflow

    from tests.serving.conftest import TEST_ROOT, _experiment

    sample = deployed["risk_scoring_industry"].sample
    with mlflow.start_run(experiment_id=_experiment()):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(__file__).with_name("slow_model.py")),
            input_example=sample.head(2), pip_requirements=["pandas"], registered_model_name="risk-scoring-slow",
        )
    endpoints.deploy("risk_scoring_industry", "risk-scoring-slow", str(info.registered_model_version), sample=sample)
    url = f"{server.url}/score/risk_scoring_industry"
    body = split_body(sample)
    try:
        (TEST_ROOT / "slow-sleep").write_text("0.05")
        for _ in range(3):  # the server learns the model is slow
            assert httpx.post(url, json=body, headers=server.headers()).status_code == 200
        (TEST_ROOT / "slow-sleep").unlink()
        (TEST_ROOT / "slow-gate").write_text("1")
        held = {}
        thread = threading.Thread(target=lambda: held.update(r=httpx.post(url, json=body, headers=server.headers(), timeout=60)))
        thread.start()
        deadline = time.monotonic() + 30
        while not (TEST_ROOT / "slow-started").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (TEST_ROOT / "slow-started").exists()
        # the held request is inside predict; other requests must still be answered
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        other = httpx.post(f"{server.url}/score/anomaly", json=split_body(deployed["anomaly"].sample), headers=server.headers(), timeout=10)
        assert other.status_code == 200
        assert thread.is_alive() and "r" not in held
    finally:
        for name in ("slow-gate", "slow-sleep", "slow-started"):
            (TEST_ROOT / name).unlink(missing_ok=True)
    thread.join(60)
    assert held["r"].status_code == 200
    endpoints.rollback("risk_scoring_industry", reason="test: slow model done")
