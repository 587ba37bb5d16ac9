"""The endpoint server killed under load and started again comes back serving what it served.

Runs on the shared endpoint stack of ``tests.serving.conftest`` (its own home, lake and key),
whose server it replaces; run it after the other tests on that stack (it is last by name).
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import polars as pl
import pytest

from salesrisk import catalog, storage
from tests.serving.conftest import STACK_SERVER_ARGS, Stack, shared_stack, start_server

pytestmark = pytest.mark.slow  # starts servers


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory) -> Stack:
    return shared_stack(request, tmp_path_factory)


def _split(frame) -> dict:
    split = json.loads(frame.to_json(orient="split", date_format="iso", index=False))
    return {"input_data": {"columns": split["columns"], "data": split["data"]}}


def _versions(stack: Stack) -> dict[str, tuple]:
    listing = httpx.get(f"{stack.server.url}/endpoints", headers=stack.server.headers(), timeout=30).json()["endpoints"]
    return {
        key: (e["live"], {c: (d["model_name"], d["version"], d["state"]) for c, d in e["deployments"].items()})
        for key, e in listing.items()
    }


def _answers(stack: Stack) -> dict[str, tuple[str, bytes]]:
    """Each deployed key's (version, response body) for its sample."""
    out = {}
    for key, reg in stack.registered.items():
        r = httpx.post(f"{stack.server.url}/score/{key}", json=_split(reg.sample), headers=stack.server.headers(), timeout=30)
        assert r.status_code == 200, r.text
        out[key] = (r.headers["x-model-version"], r.content)
    return out


class Load:
    """``clients`` threads posting in a loop; records (time, HTTP status) and transport errors."""

    def __init__(self, stack: Stack, clients: int = 4, max_seconds: float = 90.0) -> None:
        self.stack = stack
        self.seen: list[tuple[float, int, str | None]] = []
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        body = _split(stack.registered["win_probability"].sample)
        self._threads = [threading.Thread(target=self._run, args=(body,)) for _ in range(clients)]

    def _run(self, body: dict) -> None:
        url = f"{self.stack.server.url}/score/win_probability"
        with httpx.Client(headers=self.stack.server.headers(), timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                try:
                    r = client.post(url, json=body)
                    self.seen.append((time.monotonic(), r.status_code, r.headers.get("x-model-version")))
                except httpx.HTTPError as error:
                    self.errors.append((time.monotonic(), type(error).__name__))
                    time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def wait_for(self, count: int, after: float, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for t, _, _ in self.seen if t > after) < count and time.monotonic() < deadline:
            time.sleep(0.02)


def test_server_killed_under_load_restarts_serving_the_same_versions_and_answers(stack):
    versions_before, answers_before = _versions(stack), _answers(stack)
    old = stack.server
    port = int(old.url.rsplit(":", 1)[1])

    with Load(stack) as load:
        load.wait_for(20, after=0)
        killed_at = time.monotonic()
        old.process.kill()  # no graceful shutdown: a crash
        assert old.process.wait(30) != 0
        stack.server = start_server(port, *STACK_SERVER_ARGS, env=stack.env, log_name="server-stack-restarted.log")
        restarted_at = time.monotonic()
        load.wait_for(20, after=restarted_at)

    assert sum(1 for t, _, _ in load.seen if t < killed_at) >= 20
    assert sum(1 for t, _, _ in load.seen if t > restarted_at) >= 20, (load.seen[-5:], load.errors[-5:])
    # every answer the server gave was a 200 from the version it served; the only failures are
    # refused connections while no server was listening
    assert {status for _, status, _ in load.seen} == {200}
    live = versions_before["win_probability"]
    assert {v for _, _, v in load.seen} == {live[1][live[0]][1]}
    assert all(killed_at <= t <= restarted_at + 1.0 for t, _ in load.errors), load.errors
    assert _versions(stack) == versions_before
    assert _answers(stack) == answers_before


def test_the_key_is_in_no_server_log_and_no_inference_log(stack):
    """Also when a client sends it where a careless server would echo or log it."""
    key, server = stack.server.key, stack.server
    body = _split(stack.registered["win_probability"].sample)
    marker = uuid.uuid4().hex
    sent = [
        httpx.post(f"{server.url}/score/win_probability", json=body, headers=server.headers(**{"x-request-id": key})),
        httpx.post(f"{server.url}/score/win_probability", json=body, headers={"Authorization": f"Bearer {key}x"}),
        httpx.post(f"{server.url}/score/win_probability", json=body, headers={"Authorization": key}),
        httpx.post(f"{server.url}/score/{key}", json=body, headers=server.headers()),
        httpx.post(f"{server.url}/score/win_probability", json={"input_data": {"columns": [key], "data": [[1]]}},
                   headers=server.headers()),
        httpx.post(f"{server.url}/score/win_probability", json=body, headers=server.headers(**{"x-request-id": marker})),
    ]
    assert [r.status_code for r in sent] == [200, 401, 401, 404, 422, 200]
    assert all(key not in r.text and key not in str(r.headers) for r in sent)

    table = storage.join(str(stack.lake), catalog.ML_INFERENCE_LOGS)
    deadline = time.monotonic() + 20
    logged = pl.DataFrame()
    while time.monotonic() < deadline:  # the writer flushes every 0.3 s
        if storage.exists(table) and storage.list_parquet(table):  # its folder exists before its first file
            logged = storage.scan_parquet(table).collect()
            if marker in logged["request_id"].to_list():
                break
        time.sleep(0.1)
    assert marker in logged["request_id"].to_list()
    assert logged.height >= 2
    text_columns = [name for name, dtype in logged.schema.items() if dtype == pl.String]
    assert {"request_id", "inputs", "outputs"} <= set(text_columns)
    for name in text_columns:
        assert not logged[name].str.contains(key, literal=True).any(), name

    for log in _server_logs(stack):
        assert key not in log


def _server_logs(stack: Stack) -> list[str]:
    """stdout and stderr of every server the stack ran (``start_server`` sends both to one file)."""
    from tests.serving.conftest import TEST_ROOT

    logs = [path.read_text(errors="replace") for path in TEST_ROOT.glob("server-stack*.log")]
    assert len(logs) >= 1 and all(logs)
    return logs
