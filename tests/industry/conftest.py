"""The industry family's tests use the flow tests' small lake and isolated folders."""

from tests.flows.conftest import isolated, small_lake, small_lake_template  # noqa: F401 (fixtures)
