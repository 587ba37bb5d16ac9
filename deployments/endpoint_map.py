"""The fragment the ml-service merges into its ``config/default.yaml``: endpoint key -> scoring URL.

Written after every deploy (``azure_ml: endpoints: {<key>: <url>}``), merged with what is already
there so deploying one model never drops another's URL, and replaced atomically so the ml-service
never reads half a file. The same URLs as ``AZURE_ML_ENDPOINT_<KEY>=<url>`` lines serve those who
configure the ml-service through its environment instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import yaml

from deployments.files import atomic_write_text, locked
from salesrisk.settings import get_settings

log = logging.getLogger("salesrisk.endpoint_map")


class EndpointMapError(RuntimeError):
    """The existing endpoint map is not the expected YAML shape; the message names the file."""


def env_var(endpoint_key: str) -> str:
    return f"AZURE_ML_ENDPOINT_{endpoint_key.upper()}"


def env_lines(endpoints: Mapping[str, str]) -> list[str]:
    """``AZURE_ML_ENDPOINT_<KEY>=<url>`` for each endpoint, sorted by key."""
    return [f"{env_var(key)}={url}" for key, url in sorted(endpoints.items())]


def read(path: Path | None = None) -> dict[str, str]:
    """The endpoint key -> URL mapping now in the map file (empty when there is none)."""
    document = _load(Path(path or get_settings().endpoint_map))
    return dict(document.get("azure_ml", {}).get("endpoints", {}) or {})


def update(endpoints: Mapping[str, str], path: Path | None = None) -> list[str]:
    """Merge ``endpoints`` into the map file, write it atomically, log and return every env line."""
    target = Path(path or get_settings().endpoint_map)
    with locked(target.with_name(f".{target.name}.lock")):
        document = _load(target)
        section = document.setdefault("azure_ml", {})
        if not isinstance(section, dict):
            raise EndpointMapError(f"{target}: 'azure_ml' must be a mapping, found {type(section).__name__}")
        current = section.get("endpoints") or {}
        if not isinstance(current, dict):
            raise EndpointMapError(
                f"{target}: 'azure_ml.endpoints' must be a mapping of key: url, found {type(current).__name__}"
            )
        section["endpoints"] = {**current, **dict(endpoints)}
        atomic_write_text(target, yaml.safe_dump(document, sort_keys=True))
    lines = env_lines(section["endpoints"])
    for line in lines:
        log.info("%s", line)
    return lines


def _load(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise EndpointMapError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(document, dict):
        raise EndpointMapError(f"{path}: expected a mapping with 'azure_ml: endpoints:', found {type(document).__name__}")
    return document
