"""The one serving interface the flows call: deploy, roll back, and ask what an endpoint serves.

Shaped like Azure ML managed online endpoints (an endpoint per key, deployments ``blue`` and
``green``, a traffic split) so that moving to Azure swaps the backend and not the flows. The backend
is chosen by ``get_settings().serving`` from :data:`BACKENDS`, whose factories import their
backend only when called, so nothing heavy is imported until a deploy happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from salesrisk import catalog
from salesrisk.settings import get_settings

if TYPE_CHECKING:
    import pandas

COLOURS: tuple[str, str] = ("blue", "green")


class DeployError(RuntimeError):
    """A deploy or rollback did not happen; traffic stays where it was. The message says why."""


@dataclass
class DeployResult:
    """Where an endpoint's traffic goes after a deploy or rollback (or now, for :func:`current`)."""

    endpoint_key: str
    model_name: str
    version: str
    colour: str
    scoring_url: str
    previous_version: str | None
    # The registry run and source the served copy was made from, where the backend serves a copy
    # (local); ``None`` where it serves the registry's own version (Azure ML). Version numbers
    # restart at 1 when a store is replaced, so the number alone does not say which model it is.
    registration: str | None = None


class Backend(Protocol):
    """What a serving backend provides; :func:`deploy` and friends delegate to one of these."""

    def deploy(
        self, endpoint_key: str, model_name: str, version: str, *, sample: pandas.DataFrame | None = None
    ) -> DeployResult: ...

    def rollback(self, endpoint_key: str, to_version: str | None = None, reason: str = "") -> DeployResult: ...

    def current(self, endpoint_key: str) -> DeployResult | None: ...

    def slots(self, endpoint_key: str) -> list[str]:
        """The industry slot keys of ``endpoint_key`` that have a deployment."""
        ...


def _local() -> Backend:
    from deployments.local.backend import LocalBackend

    return LocalBackend()


def _azureml() -> Backend:
    from deployments.azureml.endpoints import AzureMLBackend

    return AzureMLBackend()


# SALESRISK_SERVING -> the backend's factory.
BACKENDS: dict[str, Callable[[], Backend]] = {"local": _local, "azureml": _azureml}


def backend(name: str | None = None) -> Backend:
    """The backend named by ``name`` or by ``get_settings().serving``."""
    name = name or get_settings().serving
    factory = BACKENDS.get(name)
    if factory is None:
        raise DeployError(f"serving backend {name!r} is unknown; known: {', '.join(sorted(BACKENDS))}")
    return factory()


def deploy(
    endpoint_key: str, model_name: str, version: str, *, sample: pandas.DataFrame | None = None
) -> DeployResult:
    """Put registered ``model_name`` ``version`` on the endpoint's idle colour at 0% traffic,
    smoke-test it with ``sample`` (default: the model's input example), then give it 100%.

    On a failed smoke test raise :class:`DeployError` and leave traffic on the old colour. After a
    success the endpoint map (``get_settings().endpoint_map``) carries the endpoint's scoring URL.
    """
    check_key(endpoint_key)
    return backend().deploy(endpoint_key, model_name, str(version), sample=sample)


def rollback(endpoint_key: str, to_version: str | None = None, reason: str = "") -> DeployResult:
    """Move traffic back to the previous deployment, or deploy registered ``to_version``; the
    reason is recorded in the endpoint's history."""
    check_key(endpoint_key)
    return backend().rollback(endpoint_key, None if to_version is None else str(to_version), reason)


def current(endpoint_key: str) -> DeployResult | None:
    """The deployment taking the traffic now, or ``None`` when nothing was deployed yet."""
    check_key(endpoint_key)
    return backend().current(endpoint_key)


def check_key(endpoint_key: str) -> str:
    """An endpoint key, or an industry slot ``<industry endpoint>/<industry>`` of one."""
    endpoint, industry = catalog.split_slot(endpoint_key)
    if endpoint not in catalog.ENDPOINT_KEYS or (industry is not None and not catalog.is_industry_endpoint(endpoint)):
        raise DeployError(
            f"unknown endpoint key {endpoint_key!r}; expected one of {', '.join(catalog.ENDPOINT_KEYS)}"
            f" (or <industry endpoint>{catalog.SLOT_SEPARATOR}<industry_id>)"
        )
    if industry is not None:
        try:
            catalog.check_industry_id(industry)
        except ValueError as error:
            raise DeployError(f"endpoint key {endpoint_key!r}: {error}") from None
    return endpoint_key


def industry_slots(endpoint_key: str) -> dict[str, DeployResult]:
    """Industry id -> what that industry's slot of ``endpoint_key`` serves now (deployed slots only)."""
    check_key(endpoint_key)
    lister = getattr(backend(), "slots", None)
    if lister is None:
        return {}
    found = {}
    for key in lister(endpoint_key):
        live = current(key)
        if live is not None:
            found[catalog.split_slot(key)[1]] = live
    return found
