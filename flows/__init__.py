"""Prefect flows: each composes tasks into the pipeline it is named for."""

from salesrisk.runtime import apply_defaults

# Before Prefect is imported by any flow module: project-local Prefect home, no telemetry.
apply_defaults()
