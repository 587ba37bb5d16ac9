"""Entry point of the model flow whose spec names this file (``ModelSpec.flow_file``), for
prefect.yaml (``flows/<file>.py:flow``) and ``python flows/<file>.py [--help]``.

The flow itself is built from the spec in flows/model_flow.py; these files are identical.
"""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

from flows.model_flow import flow_of_file

flow = flow_of_file(__file__)
globals()[flow.fn.__name__] = flow  # also under its function name, e.g. flows/<file>.py:<file>

if __name__ == "__main__":
    raise SystemExit(cli.main(flow))
