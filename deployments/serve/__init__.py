"""The local endpoint server (``python -m deployments.serve`` or ``make serve``)."""
