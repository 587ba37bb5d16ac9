"""A Prefect API for ``python flows/<file>.py`` runs, started before the flow's modules import,
and reused by the next run while it is still up.

Without PREFECT_API_URL Prefect starts a temporary API itself, but only at the first API call:
after this process has spent its seconds importing Prefect, MLflow and the ML code. Starting
the API first (flows/api_server.py, no UI, on loopback) lets the two overlap. It uses the same
PREFECT_HOME database, so runs show up in the UI of ``make ui`` (or ``prefect server start``)
later exactly as they would have.

The API outlives the run that started it by SALESRISK_LOCAL_API_IDLE_SECONDS of idleness (then
it exits by itself): the next run with the same PREFECT_HOME, Python and Prefect finds it through
``local-api.json`` in PREFECT_HOME and starts at once instead of waiting seconds for a server. With
0 the run stops the API it started when it ends.

The server runs the services that record what the UI shows, above all the task-run recorder:
Prefect 3 writes task runs to the database from the events the client sends, so an API without
it (``--no-services``) shows every flow with no task runs. Services that act on schedules,
workers, automations and late or paused runs are switched off: nothing in an ad hoc run needs
them, and each would start its own loop. Before a run stops the API it started, :func:`stop`
waits until its task runs are written; an API left up writes them after the run has ended (within
seconds: a test that reads them right after a run polls, tests/flows/test_task_runs.py).

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
from importlib import metadata
from pathlib import Path

_server: subprocess.Popen[bytes] | None = None  # the API this process started
_started = ""  # when this run began (UTC, ISO 8601): its task runs came after
RECORD = "local-api.json"  # in PREFECT_HOME: the API a later run may reuse


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
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
           # block types register themselves when a flow saves a block; hashing them all costs every start
           "PREFECT_API_BLOCKS_REGISTER_ON_START": "false", "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
           "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "true",
           "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "true"}
    env.update({f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in UNNEEDED_SERVICES})
    return env


def _home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", ".prefect"))


def _identity() -> dict[str, str]:
    """What a reused API must share with this run: the interpreter and Prefect's version."""
    return {"python": sys.executable, "prefect": metadata.version("prefect")}


LEASE_SECONDS = 120.0  # covers a run's imports: the API cannot go idle before the run's first request


def _lease(url: str, seconds: float = LEASE_SECONDS) -> bool:
    """Ask the API to stay up ``seconds`` more (flows/api_server.py); False if it did not agree."""
    lease = url.removesuffix("/api") + f"/salesrisk/lease?seconds={seconds:g}"
    try:
        with urllib.request.urlopen(urllib.request.Request(lease, method="POST"), timeout=2.0) as answer:
            return answer.status == 204
    except OSError:
        return False


def running(home: Path | None = None) -> dict | None:
    """The record of a live API started for this PREFECT_HOME by a run like this one, leased for
    this run, else None."""
    try:
        record = json.loads(((home or _home()) / RECORD).read_text())
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if {k: record.get(k) for k in _identity()} != _identity() or not _lease(record["url"]):
        return None
    return record


def start() -> None:
    """Point this process at a running local API, or start one in the background
    (PREFECT_API_URL either way)."""
    global _server, _started
    if _server is not None or os.environ.get("PREFECT_API_URL") or {"-h", "--help"} & set(sys.argv[1:]):
        return
    _started = datetime.now(timezone.utc).isoformat()
    home = _home()
    home.mkdir(parents=True, exist_ok=True)
    found = running(home)
    if found is None:
        port = _free_port()
        command = [sys.executable, "-m", "flows.api_server", "--port", str(port), "--record", str(home / RECORD),
                   "--owner", str(os.getpid())]
        project = str(Path(__file__).resolve().parents[1])
        env = server_environment()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [project, env.get("PYTHONPATH")]))
        with open(home / "local-api.log", "wb") as log:  # the child keeps its own handle
            _server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
        found = {"url": f"http://127.0.0.1:{port}/api", "pid": _server.pid, **_identity()}
        (home / RECORD).write_text(json.dumps(found))
    else:
        print(f"Using the local Prefect API at {found['url']} (started by an earlier run)", file=sys.stderr)
    os.environ["PREFECT_API_URL"] = found["url"]
    os.environ.setdefault("PREFECT_UI_URL", "")  # this API serves no UI: no "View at" links to it
    atexit.register(stop)


def starting() -> bool:
    """Whether this run is starting its own API (not using one an earlier run left up): the
    seconds it waits for it are free for other start-up work."""
    return _server is not None


def wait(timeout: float = 180.0) -> None:
    """Block until the API answers; raise with the server's own words if it died or never did."""
    if not _started:
        return
    url = os.environ["PREFECT_API_URL"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _server is not None and _server.poll() is not None:
            raise RuntimeError(f"the local Prefect API exited with code {_server.returncode}; see {_home() / 'local-api.log'}")
        if _lease(url):  # answered once the app is up: uvicorn serves only after Prefect's start-up
            return
        time.sleep(0.1)
    raise RuntimeError(f"the local Prefect API did not answer at {url} within {timeout:.0f} s")


OPEN_STATES = ["SCHEDULED", "PENDING", "RUNNING"]


def _count(path: str, body: dict, url: str | None = None) -> int:
    request = urllib.request.Request((url or os.environ["PREFECT_API_URL"]) + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return int(json.load(answer))


def wait_recorded(since: str, timeout: float = 15.0, poll: float = 0.2, url: str | None = None) -> bool:
    """Wait until the task runs created since ``since`` (ISO time) are written: none left open and
    their count unchanged between two reads. The client sends task-run events before this runs (Prefect
    drains them at interpreter exit); the server's recorder writes them moments later. False when
    the deadline passed first (e.g. a task left running by a crash), which only costs the wait."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        try:
            recent = {"expected_start_time": {"after_": since}}
            total = _count("/task_runs/count", {"task_runs": recent}, url)
            still_open = _count("/task_runs/count", {"task_runs": {**recent, "state": {"type": {"any_": OPEN_STATES}}}}, url)
        except OSError:
            return False
        if still_open == 0 and total == last:
            return True
        last = total
        time.sleep(poll)
    return False


def stop() -> None:
    """At exit (after Prefect has sent its last events): leave the API up, idle from now on, unless
    this run started it and it is not to stay up (SALESRISK_LOCAL_API_IDLE_SECONDS=0); then wait
    until this run's task runs are written, and stop it. An API that stays up writes them itself."""
    global _server, _started
    if not _started:
        return
    started, _started = _started, ""
    from salesrisk.settings import get_settings

    if _server is None or (get_settings().local_api_idle_seconds > 0 and _server.poll() is None):
        _lease(os.environ["PREFECT_API_URL"], 0)
        if _server is not None:
            print(f"The local Prefect API stays up at {os.environ['PREFECT_API_URL']} until idle for "
                  f"{get_settings().local_api_idle_seconds:.0f} s (SALESRISK_LOCAL_API_IDLE_SECONDS)", file=sys.stderr)
        _server = None
        return
    if _server.poll() is None:
        wait_recorded(started)
    _server.terminate()
    try:
        _server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _server.kill()
        _server.wait()
    _server = None
