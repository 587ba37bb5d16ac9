"""The key clients present as ``Authorization: Bearer <key>``, as on Azure ML endpoints.

Taken from ``SALESRISK_ENDPOINT_KEY`` when set; otherwise generated once with :mod:`secrets` and
kept in a file readable only by its owner, so the server and a deployer on the same machine agree
on it without anyone typing it. The key is never logged.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from deployments.files import atomic_write_text, locked
from deployments.local.state import endpoints_dir
from salesrisk.settings import Settings, get_settings

KEY_FILE = "endpoint.key"


def key_path(settings: Settings | None = None) -> Path:
    return endpoints_dir(settings) / KEY_FILE


def endpoint_key(settings: Settings | None = None) -> str:
    """The endpoint key from settings, else the stored one, generating and storing it on first use."""
    settings = settings or get_settings()
    if settings.endpoint_key is not None and settings.endpoint_key.get_secret_value():
        return settings.endpoint_key.get_secret_value()
    path = key_path(settings)
    stored = _read(path)
    if stored:
        return stored
    with locked(path.with_name(f".{KEY_FILE}.lock")):
        stored = _read(path)  # another process may have created it while we waited
        if stored:
            return stored
        key = secrets.token_urlsafe(32)
        atomic_write_text(path, key + "\n", mode=0o600)
        return key


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
