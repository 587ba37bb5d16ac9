"""The local Prefect API of ad hoc runs (flows/local_api.py starts it): Prefect's own server app
under uvicorn, which exits by itself once it has been idle for SALESRISK_LOCAL_API_IDLE_SECONDS.

``python -m flows.api_server --port PORT --record FILE``

Why not ``prefect server start``: that command loads Prefect's whole command line first (about
1.5 s of imports) and, before serving, hashes every block type it could register (about 1.5 s
more on each start, even when nothing changed). An ad hoc run needs neither: its environment
(:func:`flows.local_api.server_environment`) switches block registration off, and a block a flow
saves registers its own type. The app, its database and its services are Prefect's, unchanged.

**SQLite transactions begin IMMEDIATE.** Prefect's API and its services write the one SQLite file
at once: the task-run recorder writes task runs from events while a flow creates its sub-flows'
task runs through the API. An API transaction that reads and then writes (``create_task_run``
reads the flow run's labels first) fails at once with "database is locked" when another write
committed in between (SQLite cannot upgrade a stale read snapshot; the busy timeout does not
apply), the API answers 503, and the client waits 2 s, then 4 s, before retrying: measured, 13 such
waits in one unchanged retrain-all rerun, most of its wall time (PrefectHQ/prefect#18934). Taking
the write lock at BEGIN, which is what Prefect's own ``with_for_update=True`` does on SQLite, makes
a transaction wait (up to Prefect's 60 s busy timeout) instead. :func:`immediate_sqlite_transactions`
sets that flag on every transaction Prefect begins; reads outside transactions are unchanged.
This replaces a method of Prefect's SQLite configuration class: an exception to "use the library
as it is", for this one server, until Prefect does it itself.

Idle means no request in flight and no open connection (a flow's event stream is one) for the
idle time. The next ``python flows/<file>.py`` within it finds this server through ``FILE`` (in
PREFECT_HOME) and skips the seconds of starting one. With an idle time of 0 it runs until the
run that started it stops it at exit, or until that run's process is gone (killed, say), which it
checks every second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


LEASE_PATH = "/salesrisk/lease"  # POST ?seconds=N: stay up N more seconds, idle or not (0 ends the lease)


class Activity:
    """ASGI middleware counting requests and websockets in flight, when the last one ended, and
    the lease a run that found this server takes to cover its imports before its first request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.open = 0
        self.last = time.monotonic()
        self.leased_until = 0.0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == LEASE_PATH:
            await self.lease(scope, send)
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
            self.last = time.monotonic()

    async def lease(self, scope: Scope, send: Any) -> None:
        from urllib.parse import parse_qs

        try:
            seconds = float(parse_qs(scope["query_string"].decode())["seconds"][0])
            status = 204
        except (KeyError, ValueError):
            seconds, status = 0.0, 400
        self.leased_until = time.monotonic() + seconds
        self.last = time.monotonic()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def idle_for(self) -> float:
        if self.open or time.monotonic() < self.leased_until:
            return 0.0
        return time.monotonic() - max(self.last, self.leased_until)


def immediate_sqlite_transactions() -> None:
    """Every transaction Prefect begins on SQLite takes the write lock first (see the module docstring)."""
    from contextlib import asynccontextmanager

    from prefect.server.database.configurations import AioSqliteConfiguration

    begin = AioSqliteConfiguration.begin_transaction
    if getattr(begin, "immediate", False):
        return

    @asynccontextmanager
    async def begin_immediate(self: Any, session: Any, with_for_update: bool = False) -> Any:
        async with begin(self, session, with_for_update=True) as transaction:
            yield transaction

    begin_immediate.immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_immediate  # type: ignore[method-assign]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


async def serve(port: int, idle_seconds: float, record: Path | None, owner: int | None = None) -> None:
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import get_current_settings

    immediate_sqlite_transactions()
    api = get_current_settings().server.api
    activity = Activity(create_app(final=True))
    server = uvicorn.Server(uvicorn.Config(
        activity, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=api.keepalive_timeout,
        ws_ping_interval=api.websocket_ping_interval, ws_ping_timeout=api.websocket_ping_timeout,
    ))

    async def exit_when_idle() -> None:
        while not server.started:  # the database's migrations may take a while on first start
            await asyncio.sleep(0.1)
        activity.last = time.monotonic()
        while not server.should_exit:
            await asyncio.sleep(min(1.0, idle_seconds))
            if activity.idle_for() >= idle_seconds:
                server.should_exit = True

    async def exit_without_owner(pid: int) -> None:
        while not server.should_exit:
            await asyncio.sleep(1.0)
            if not alive(pid):
                server.should_exit = True

    # uvicorn shuts down on SIGTERM and then raises it again: exit through the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if idle_seconds > 0:
        watchdog: asyncio.Task[None] | None = asyncio.create_task(exit_when_idle())
    elif owner is not None:
        watchdog = asyncio.create_task(exit_without_owner(owner))
    else:
        watchdog = None
    try:
        await server.serve()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        forget(record)


def forget(record: Path | None) -> None:
    """Remove the record that points the next run here, unless a newer server owns it now."""
    if record is None:
        return
    try:
        if json.loads(record.read_text()).get("pid") == os.getpid():
            record.unlink()
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, help="the file (in PREFECT_HOME) that names this server")
    parser.add_argument("--owner", type=int, help="the process that started this server: with an idle time of 0, "
                        "the server exits when it is gone")
    args = parser.parse_args(argv)
    from salesrisk.settings import get_settings

    asyncio.run(serve(args.port, get_settings().local_api_idle_seconds, args.record, args.owner))


if __name__ == "__main__":
    main()
