"""Resolve an input to a URI plus a content fingerprint (the cache keys downstream use it)."""

from __future__ import annotations

import asyncio

import re

from prefect import task
from prefect.cache_policies import NO_CACHE

from salesrisk import storage
from tasks.policies import RETRY_OPTIONS
from tasks.refs import DataRef

AZUREML_ASSET = re.compile(r"^azureml:(?P<name>[A-Za-z0-9_.-]+):(?P<version>[0-9]+|latest)$")


def resolve(uri: str) -> DataRef:
    """A registered Azure ML data asset is immutable per version, so its name is its fingerprint."""
    if uri.startswith("azureml:"):
        if not AZUREML_ASSET.match(uri):
            raise ValueError(
                f"{uri}: not a data asset reference; expected azureml:<name>:<version>, "
                "e.g. azureml:risk_evaluations:3"
            )
        return DataRef(uri=uri, fingerprint=uri)
    return DataRef(uri=uri, fingerprint=storage.fingerprint(uri))


@task(name="fetch", task_run_name="fetch {uri}", cache_policy=NO_CACHE, **RETRY_OPTIONS)
async def fetch(uri: str) -> DataRef:
    return await asyncio.to_thread(resolve, uri)
