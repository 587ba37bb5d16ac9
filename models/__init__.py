"""Pure ML: one module per model with train / evaluate / predict and a command-line entry.

Nothing here imports Prefect, ``tasks`` or ``flows``: a trainer runs on Azure ML compute as a plain
Python process.
"""
