"""Job-side entry point: ``python -m deployments.azureml.launch models.<name> ARGS...``.

Two things an Azure ML command line cannot express on its own, handled here before the module runs
exactly as ``python -m models.<name> ARGS...`` would:

- An optional input has no empty value: Azure ML rejects an empty string and its ``$[[...]]``
  optional syntax is not accepted in command *jobs*. Optional inputs therefore default to the
  word ``none``; ``--flag none`` pairs (and a bare ``none``, the unset ``deploy_flag``) are dropped.
- The job knows its workspace as ``AZUREML_ARM_*``; the project's settings read ``AZURE_ML_*``, so
  ``--deploy`` inside a job finds the workspace without the submitter repeating it.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import MutableMapping, Sequence

UNSET = "none"

# AZURE_ML_* setting <- variable Azure ML sets in every job.
WORKSPACE_VARIABLES: dict[str, str] = {
    "AZURE_ML_SUBSCRIPTION_ID": "AZUREML_ARM_SUBSCRIPTION",
    "AZURE_ML_RESOURCE_GROUP": "AZUREML_ARM_RESOURCEGROUP",
    "AZURE_ML_WORKSPACE_NAME": "AZUREML_ARM_WORKSPACE_NAME",
}


def drop_unset(args: Sequence[str]) -> list[str]:
    """The arguments without ``--flag none`` pairs and bare ``none`` words."""
    out: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        following = args[index + 1] if index + 1 < len(args) else None
        if arg.startswith("--") and following is not None and following.lower() == UNSET:
            index += 2
            continue
        if arg.lower() != UNSET:
            out.append(arg)
        index += 1
    return out


def workspace_from_job(environ: MutableMapping[str, str]) -> None:
    """Fill the ``AZURE_ML_*`` settings from the job's ``AZUREML_ARM_*`` where they are unset."""
    for setting, job_variable in WORKSPACE_VARIABLES.items():
        if not environ.get(setting) and environ.get(job_variable):
            environ[setting] = environ[job_variable]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or not args[0].startswith("models."):
        sys.exit("usage: python -m deployments.azureml.launch models.<name> [ARGS...]")
    module, rest = args[0], drop_unset(args[1:])
    workspace_from_job(os.environ)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
