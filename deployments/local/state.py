"""The local endpoints' state: which registered version sits on blue and green, the traffic split,
and the history of deploys and rollbacks with their reasons.

One JSON file under ``<home>/endpoints/`` is the single source of truth shared by whoever deploys
(a flow, a trainer, a person) and the endpoint server, which polls its modification time. Writers
hold a lock and replace the file atomically; the server reads without a lock and always sees a
whole state. ``revision`` grows by one on every write so a deployer can wait until the server
has applied its change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from deployments.files import atomic_write_text, locked
from salesrisk.settings import Settings, get_settings

COLOURS: tuple[str, str] = ("blue", "green")
STATE_FILE = "state.json"
HISTORY_LIMIT = 200  # per endpoint; older entries are dropped


class StateError(RuntimeError):
    """The state file exists but cannot be read as endpoint state; the message names the file."""


def endpoints_dir(settings: Settings | None = None) -> Path:
    return Path((settings or get_settings()).home) / "endpoints"


def state_path(settings: Settings | None = None) -> Path:
    return endpoints_dir(settings) / STATE_FILE


def state_id(path: Path) -> str:
    """A short id for one state file, so a deployer can tell its own server from another's."""
    return hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def other(colour: str) -> str:
    return COLOURS[1] if colour == COLOURS[0] else COLOURS[0]


@dataclass
class Slot:
    """One deployment (a colour) of an endpoint: a registered model version copied to ``path``."""

    model_name: str
    version: str
    path: str
    deployed_at: str


@dataclass
class EndpointState:
    deployments: dict[str, Slot] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def live_colour(self) -> str | None:
        """The colour with the most traffic (blue on a tie), or ``None`` when none has any."""
        weighted = [(self.traffic.get(c, 0), -i, c) for i, c in enumerate(COLOURS) if c in self.deployments]
        best = max(weighted, default=None)
        return best[2] if best and best[0] > 0 else None

    def idle_colour(self) -> str:
        live = self.live_colour()
        return other(live) if live else COLOURS[0]

    def record(self, action: str, **details: object) -> None:
        self.history.append({"at": now_iso(), "action": action, **details})
        del self.history[:-HISTORY_LIMIT]


@dataclass
class State:
    revision: int = 0
    endpoints: dict[str, EndpointState] = field(default_factory=dict)

    def endpoint(self, key: str) -> EndpointState:
        return self.endpoints.setdefault(key, EndpointState())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> State:
        raw = json.loads(text)
        return cls(
            revision=int(raw.get("revision", 0)),
            endpoints={
                key: EndpointState(
                    deployments={c: Slot(**slot) for c, slot in ep.get("deployments", {}).items()},
                    traffic={c: int(v) for c, v in ep.get("traffic", {}).items()},
                    history=list(ep.get("history", [])),
                )
                for key, ep in raw.get("endpoints", {}).items()
            },
        )


def load(path: Path | None = None) -> State:
    """The state now on disk; an empty state when the file does not exist yet."""
    path = path or state_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return State()
    try:
        return State.from_json(text)
    except (ValueError, TypeError, KeyError) as error:
        raise StateError(
            f"{path}: not a readable endpoint state ({error}); expected JSON with "
            "'revision' and 'endpoints: {key: {deployments, traffic, history}}'"
        ) from error


def signature(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the file is replaced (inode, size, mtime); ``None`` if it is absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@contextlib.contextmanager
def transaction(path: Path | None = None) -> Iterator[State]:
    """Load the state under the lock, let the block change it, then write it with revision + 1.

    An exception in the block writes nothing.
    """
    path = path or state_path()
    with locked(path.with_name(".state.lock")):
        state = load(path)
        yield state
        state.revision += 1
        atomic_write_text(path, state.to_json())


@contextlib.contextmanager
def endpoint_lock(key: str, settings: Settings | None = None) -> Iterator[None]:
    """Serialise deploys and rollbacks of one endpoint (they span a smoke test, not one write)."""
    with locked(endpoints_dir(settings) / f".{key.replace('/', '.')}.lock"):  # an industry slot has a '/'
        yield
