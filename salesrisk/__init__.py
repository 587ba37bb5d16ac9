"""Cross-cutting pieces every layer shares: settings, storage, logging.

This package sits below ``models``, ``deployments``, ``tasks`` and ``flows`` and imports none of
them, so a trainer shipped to Azure ML compute carries it without Prefect.
"""
