"""A deploy never falls back silently: with nothing listening it smoke-tests in process (and says
so), a slow server is waited for, and one that never answers fails the deploy with that reason."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deployments.endpoints import DeployError
from deployments.local import backend as local_backend
from deployments.local import state as st


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SALESRISK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(local_backend, "HEALTH_ATTEMPT_SECONDS", 0.3)
    return tmp_path


def _port(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv("SALESRISK_SERVE_HOST", "127.0.0.1")
    monkeypatch.setenv("SALESRISK_SERVE_PORT", str(port))


@pytest.fixture()
def slow_server(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Answers /health like the endpoint server, the first time only after 1.5 s."""
    answered: list[float] = []
    state = st.state_id(local_backend.LocalBackend().state_path)

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if not answered:
                time.sleep(1.5)
            answered.append(time.monotonic())
            body = json.dumps({"state_id": state, "revision": 0}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _port(monkeypatch, server.server_address[1])
    yield answered
    server.shutdown()
    server.server_close()


def test_nothing_listening_means_in_process_and_says_so(home: Path, monkeypatch, caplog) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    _port(monkeypatch, port)
    caplog.set_level("INFO", logger="salesrisk.deploy")
    assert local_backend.LocalBackend()._server_url() is None
    assert "smoke-testing in this process" in caplog.text


def test_a_slow_server_is_waited_for(slow_server: list[float]) -> None:
    url = local_backend.LocalBackend()._server_url()
    assert url is not None and url.startswith("http://127.0.0.1:")
    assert slow_server  # it answered, after the first attempt timed out


def test_a_server_that_never_answers_fails_the_deploy_with_the_reason(home: Path, monkeypatch) -> None:
    monkeypatch.setattr(local_backend, "HEALTH_TIMEOUT", 1.0)
    with socket.socket() as listening:  # accepts connections (the kernel's backlog), never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        _port(monkeypatch, listening.getsockname()[1])
        with pytest.raises(DeployError, match="did not answer /health within 1 s"):
            local_backend.LocalBackend()._server_url()
