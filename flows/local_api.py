"""A Prefect API for one ``python flows/<file>.py`` run, started before the flow's modules import.

Without PREFECT_API_URL Prefect starts a temporary API itself, but only at the first API call:
after this process has spent its seconds importing Prefect, MLflow and the ML code. Starting
``prefect server start`` (API only: no UI, no background services, on loopback) first lets the two
overlap, which takes seconds off every ad hoc run. It uses the same PREFECT_HOME database, so runs
show up in ``prefect server start``'s UI later exactly as they would have.

Nothing here imports Prefect: that is the point.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

_server: subprocess.Popen[bytes] | None = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start() -> None:
    """Start the API in the background and point this process at it (PREFECT_API_URL)."""
    global _server
    if _server is not None or os.environ.get("PREFECT_API_URL") or {"-h", "--help"} & set(sys.argv[1:]):
        return
    port = _free_port()
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port),
               "--no-ui", "--no-services", "--analytics-off", "--log-level", "WARNING"]
    home = Path(os.environ.get("PREFECT_HOME", ".prefect"))
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "local-api.log", "wb") as log:  # the child keeps its own handle
        _server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    os.environ.setdefault("PREFECT_UI_URL", "")  # this API serves no UI: no "View at" links to it
    atexit.register(stop)


def wait(timeout: float = 180.0) -> None:
    """Block until the API answers; raise with the server's own words if it died or never did."""
    if _server is None:
        return
    url = os.environ["PREFECT_API_URL"] + "/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _server.poll() is not None:
            log = Path(os.environ.get("PREFECT_HOME", ".prefect")) / "local-api.log"
            raise RuntimeError(f"the local Prefect API exited with code {_server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the local Prefect API did not answer at {url} within {timeout:.0f} s")


def stop() -> None:
    global _server
    if _server is None:
        return
    _server.terminate()
    try:
        _server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _server.kill()
        _server.wait()
    _server = None
