"""A Prefect API for one ``python flows/<file>.py`` run, started before the flow's modules import.

Without PREFECT_API_URL Prefect starts a temporary API itself, but only at the first API call:
after this process has spent its seconds importing Prefect, MLflow and the ML code. Starting
``prefect server start`` (no UI, on loopback) first lets the two overlap, which takes seconds off
every ad hoc run. It uses the same PREFECT_HOME database, so runs show up in the UI of ``make ui``
(or ``prefect server start``) later exactly as they would have.

The server runs the services that record what the UI shows, above all the task-run recorder:
Prefect 3 writes task runs to the database from the events the client sends, so an API without
it (``--no-services``) shows every flow with no task runs. Services that act on schedules,
workers, automations and late or paused runs are switched off: nothing in an ad hoc run needs
them, and each would start its own loop. Before the server stops, :func:`stop` waits until the
task runs are written.

Nothing here imports Prefect: that is the point.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

_server: subprocess.Popen[bytes] | None = None
_started = ""  # when the server was started (UTC, ISO 8601): this run's task runs came after


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Server services an ad hoc run does not need (each is PREFECT_SERVER_SERVICES_<NAME>_ENABLED).
# Left on: the task-run recorder and the event persister (what the UI's run pages read), and the
# event and log streams, which have no switch.
UNNEEDED_SERVICES = (
    "SCHEDULER", "LATE_RUNS", "FOREMAN", "CANCELLATION_CLEANUP", "PAUSE_EXPIRATIONS", "REPOSSESSOR",
    "DB_VACUUM", "CLEANUP_RECONCILER", "TRIGGERS", "EVENT_LOGGER",
)


def server_environment() -> dict[str, str]:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "true",
           "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "true"}
    env.update({f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in UNNEEDED_SERVICES})
    return env


def start() -> None:
    """Start the API in the background and point this process at it (PREFECT_API_URL)."""
    global _server, _started
    if _server is not None or os.environ.get("PREFECT_API_URL") or {"-h", "--help"} & set(sys.argv[1:]):
        return
    port = _free_port()
    _started = datetime.now(timezone.utc).isoformat()
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port),
               "--no-ui", "--analytics-off", "--log-level", "WARNING"]
    home = Path(os.environ.get("PREFECT_HOME", ".prefect"))
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "local-api.log", "wb") as log:  # the child keeps its own handle
        _server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=server_environment(), start_new_session=True)
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


OPEN_STATES = ["SCHEDULED", "PENDING", "RUNNING"]


def _count(path: str, body: dict) -> int:
    request = urllib.request.Request(os.environ["PREFECT_API_URL"] + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return int(json.load(answer))


def wait_recorded(since: str, timeout: float = 15.0, poll: float = 0.2) -> bool:
    """Wait until the task runs created since ``since`` (ISO time) are written: none left open and
    their count unchanged between two reads. The client sends task-run events before this runs (Prefect
    drains them at interpreter exit); the server's recorder writes them moments later. False when
    the deadline passed first (e.g. a task left running by a crash), which only costs the wait."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        try:
            recent = {"expected_start_time": {"after_": since}}
            total = _count("/task_runs/count", {"task_runs": recent})
            still_open = _count("/task_runs/count", {"task_runs": {**recent, "state": {"type": {"any_": OPEN_STATES}}}})
        except OSError:
            return False
        if still_open == 0 and total == last:
            return True
        last = total
        time.sleep(poll)
    return False


def stop() -> None:
    global _server
    if _server is None:
        return
    if _server.poll() is None:
        wait_recorded(_started)
    _server.terminate()
    try:
        _server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _server.kill()
        _server.wait()
    _server = None
