"""The local serving backend: blue/green deployments per endpoint in one JSON state file that the
endpoint server (``python -m deployments.serve``) watches."""
