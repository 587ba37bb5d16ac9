"""Tracking and registry through MLflow's API: a local SQLite file by default.

An Azure ML workspace speaks the same MLflow API (its tracking URI comes from the workspace), so
this module is the only place that knows where runs and model versions live.

Conventions on every registered model (MLflow 3 aliases; stages are deprecated):

- alias ``champion``: the version its endpoint serves, moved by deploy and rollback;
- alias ``challenger``: the latest candidate registered;
- a version's gate decision is written once, when the version is created, and never rewritten;
- an append-only promotion ledger: one registered-model tag ``ledger.NNNNNN`` per change of
  champion (from -> to version, reason, metrics, flow run, time), never overwritten. Read it with
  ``python -m salesrisk.registry ledger [NAME]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from salesrisk.settings import get_settings

ARTIFACTS_DIR = "mlartifacts"
CHAMPION = "champion"
CHALLENGER = "challenger"
LEDGER_PREFIX = "ledger."
LEDGER_REASON_CHARS = 2000  # a tag value holds at most 5,000 characters


def configure() -> str:
    """Point MLflow at the configured tracking URI and return it."""
    uri = get_settings().mlflow_tracking_uri
    # The registry follows the tracking URI when no registry URI is set (an Azure ML workspace
    # serves both). set_registry_uri would also export MLFLOW_REGISTRY_URI to this process's
    # environment, pinning every later client to this store.
    mlflow.set_tracking_uri(uri)
    return uri


def client() -> MlflowClient:
    configure()
    return MlflowClient()


def initialise_store() -> bool:
    """Create a fresh local store once, before trainers start in parallel: two processes creating
    the same SQLite file at the same moment race (one fails), and each pays for the migration.
    Returns whether it had to; an existing file or a remote store is left to MLflow."""
    uri = get_settings().mlflow_tracking_uri
    if not uri.startswith("sqlite:///"):
        return False
    path = Path(uri.removeprefix("sqlite:///"))
    if path.exists() and path.stat().st_size > 0:
        return False
    client().search_experiments(max_results=1)
    return True


STORE_LOCK = "tracking-store"
STORE_ID_TAG = "salesrisk.store_id"
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's "Default" experiment, made with every store


def store_id() -> str:
    """The tracking store's identity: its URI and an id written into the store the first time it
    is asked for (a tag of MLflow's Default experiment), made under the store's lock.

    Why: a training step's cached result names an MLflow run. A store deleted and made again at
    the same URI (``rm mlflow.db``, keeping the Prefect cache) holds no such run, and a cached
    result would send registration to a run that is not there; with this in the step's cache key a
    new store trains again. A store where the tag cannot be read or written gives its URI alone.
    """
    import uuid

    from salesrisk import locks

    uri = configure()
    try:
        with locks.held(STORE_LOCK):
            initialise_store()
            tracking = MlflowClient()
            found = tracking.get_experiment(DEFAULT_EXPERIMENT_ID).tags.get(STORE_ID_TAG)
            if found is None:
                found = uuid.uuid4().hex
                tracking.set_experiment_tag(DEFAULT_EXPERIMENT_ID, STORE_ID_TAG, found)
    except Exception:  # a remote store without a Default experiment, or one that refuses the tag
        return uri
    return f"{uri}#{found}"


def artifacts_root(uri: str) -> Path | None:
    """Where a local store's artifacts go: ``mlartifacts/`` beside the SQLite file, wherever the
    process runs (a store in a temporary folder keeps its artifacts there too). None for other
    stores, which place artifacts themselves."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).resolve().parent / ARTIFACTS_DIR


def experiment_id(name: str) -> str:
    """Get or create an experiment; locally its artifacts go to ``mlartifacts/`` beside the DB."""
    uri = configure()
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    root = artifacts_root(uri)
    return mlflow.create_experiment(name, artifact_location=root.as_uri() if root else None)


def register_run_model(run_id: str, name: str, tags: dict[str, Any] | None = None) -> str:
    """Register the ``model`` artifact of a run under ``name`` and return the new version."""
    configure()
    version = mlflow.register_model(
        f"runs:/{run_id}/model", name, tags={k: str(v) for k, v in (tags or {}).items()}
    )
    return str(version.version)


def model_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def add_missing_version_tags(name: str, version: str, tags: dict[str, Any]) -> dict[str, str]:
    """Write only the tags the version does not have yet; return the ones it had, which stay as
    they are: a version's record (its first gate decision above all) is never rewritten."""
    c = client()
    current = c.get_model_version(name, version).tags or {}
    for key, value in tags.items():
        if key not in current:
            c.set_model_version_tag(name, version, key, str(value))
    return {k: v for k, v in current.items() if k in tags}


def registered_run(name: str, version: str) -> str | None:
    """The run ``name`` ``version`` was registered from (``""`` when it names none), or ``None``
    when the store holds no such version: an endpoint can serve a version of a store since deleted
    or replaced (``rm mlflow.db``), whose number the new store gives to another model."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version(name, str(version)).run_id or ""
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def delete_version(name: str, version: str) -> None:
    """Undo a registration (used when a deploy in the same transaction fails)."""
    client().delete_model_version(name, version)


# --- aliases ----------------------------------------------------------------------------------


def alias_version(name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: str) -> None:
    client().set_registered_model_alias(name, alias, str(version))


def restore_alias(name: str, alias: str, version: str | None) -> None:
    """Point ``alias`` back at ``version``, or remove it when there was none."""
    if version is None:
        from mlflow.exceptions import MlflowException

        try:
            client().delete_registered_model_alias(name, alias)
        except MlflowException:
            pass  # already gone (deleting a version removes its aliases)
    else:
        set_alias(name, alias, version)


def champion_uri(name: str) -> str:
    return f"models:/{name}@{CHAMPION}"


# --- promotion ledger -------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerEntry:
    """One change of the version a registered model serves."""

    model: str
    from_version: str | None
    to_version: str
    action: str  # deploy | rollback
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    flow_run: str | None = None
    at: str = ""  # ISO 8601, UTC
    number: int = 0  # position in the ledger, from 1


def ledger(name: str) -> list[LedgerEntry]:
    """The model's promotion ledger, oldest first ([] for an unknown model)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client().get_registered_model(name).tags or {}
    except MlflowException:
        return []
    entries = []
    for key in sorted(k for k in tags if k.startswith(LEDGER_PREFIX)):
        record = json.loads(tags[key])
        entries.append(LedgerEntry(model=name, number=int(key.removeprefix(LEDGER_PREFIX)), **record))
    return entries


def append_ledger(
    name: str,
    to_version: str,
    *,
    from_version: str | None,
    action: str,
    reason: str,
    metrics: dict[str, float] | None = None,
    flow_run: str | None = None,
) -> LedgerEntry:
    """Append an entry under the next free number; an existing entry is never written again."""
    from salesrisk import locks

    with locks.held(f"ledger-{name}"):
        c = client()
        taken = {k for k in (c.get_registered_model(name).tags or {}) if k.startswith(LEDGER_PREFIX)}
        number = 1 + max((int(k.removeprefix(LEDGER_PREFIX)) for k in taken), default=0)
        entry = LedgerEntry(
            model=name,
            from_version=None if from_version is None else str(from_version),
            to_version=str(to_version),
            action=action,
            reason=reason[:LEDGER_REASON_CHARS],
            metrics={k: round(float(v), 6) for k, v in (metrics or {}).items()},
            flow_run=flow_run,
            at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            number=number,
        )
        record = {k: v for k, v in asdict(entry).items() if k not in ("model", "number")}
        c.set_registered_model_tag(name, f"{LEDGER_PREFIX}{number:06d}", json.dumps(record, sort_keys=True))
    return entry


def promote(
    name: str,
    version: str,
    *,
    action: str,
    reason: str,
    metrics: dict[str, float] | None = None,
    flow_run: str | None = None,
) -> LedgerEntry | None:
    """Record the change in the ledger, then make ``version`` the champion; None when it already
    was (a redeploy of the serving version changes nothing).

    Safe to retry after a failure half-way: an entry for this very move that is already the
    ledger's last one is not appended again."""
    before = alias_version(name, CHAMPION)
    if before == str(version):
        return None
    entries = ledger(name)
    last = entries[-1] if entries else None
    if last is not None and (last.from_version, last.to_version) == (before, str(version)):
        entry = last  # written by an attempt whose alias update failed
    else:
        entry = append_ledger(name, version, from_version=before, action=action, reason=reason,
                              metrics=metrics, flow_run=flow_run)
    set_alias(name, CHAMPION, version)
    return entry


def registration_of(model_version: Any) -> str:
    """Which logged model a registry version is (its run and artifact source). Unlike the version
    number, this does not repeat when a store is deleted or replaced at the same URI."""
    return f"{model_version.run_id or ''} {model_version.source or ''}"


def registration(name: str, version: str) -> str:
    """:func:`registration_of` registered ``name`` ``version``."""
    return registration_of(client().get_model_version(name, str(version)))


def version_tag(name: str, version: str, key: str) -> str | None:
    return (client().get_model_version(name, version).tags or {}).get(key)


def version_metrics(name: str, version: str) -> dict[str, float]:
    """The metrics the version was registered with (its ``metric.*`` tags)."""
    tags = client().get_model_version(name, version).tags or {}
    return {k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")}


def registered_names() -> list[str]:
    return sorted(m.name for m in client().search_registered_models())


def ledger_table(entries: list[LedgerEntry]) -> list[dict[str, str]]:
    """Rows for a table: one per entry."""
    return [
        {
            "#": str(e.number),
            "model": e.model,
            "from -> to": f"v{e.from_version or '-'} -> v{e.to_version}",
            "action": e.action,
            "reason": e.reason.replace("\n", "; "),
            "metrics": ", ".join(f"{k}={v:.4g}" for k, v in sorted(e.metrics.items())),
            "flow run": e.flow_run or "-",
            "at (UTC)": e.at,
        }
        for e in entries
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salesrisk.registry", description="Read the model registry.")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("ledger", help="the promotion ledger of one or every registered model")
    show.add_argument("model", nargs="?", help="registered model name (default: all)")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    commands.add_parser("aliases", help="champion and challenger of every registered model")
    args = parser.parse_args(argv)
    names = [args.model] if getattr(args, "model", None) else registered_names()
    if args.command == "aliases":
        for name in names:
            print(f"{name}: champion v{alias_version(name, CHAMPION) or '-'}, challenger v{alias_version(name, CHALLENGER) or '-'}")
        return 0
    entries = [entry for name in names for entry in ledger(name)]
    if args.json:
        for entry in entries:
            print(json.dumps(asdict(entry), sort_keys=True))
        return 0
    rows = ledger_table(entries)
    if not rows:
        print("no promotions recorded" + (f" for {args.model}" if args.model else ""))
        return 0
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in rows[0]}
    print("  ".join(h.ljust(w) for h, w in widths.items()))
    for row in rows:
        print("  ".join(row[h].ljust(w) for h, w in widths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
