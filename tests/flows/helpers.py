"""Read what Prefect recorded about a flow run: its task runs by name, with states and attempts.

Prefect 3 writes task runs from the events the client sends, through the server's task-run
recorder, moments after the task ran: a test that reads at once can see a task still Running, or
not at all. :func:`task_runs` therefore polls until what the test expects is written (or a
deadline passes, and then the test sees what was there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import TaskRun

RECORD_TIMEOUT = 60.0  # seconds; the recorder writes within a second on an idle machine


async def _read(flow_run_id: UUID) -> list[TaskRun]:
    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
        ids = [flow_run_id, *(child.id for child in children)]
        return await client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": ids}))


def settled(runs: list[TaskRun], names: Iterable[str]) -> bool:
    """Every task run is in a final state and each named task has at least one run."""
    final = all(run.state is not None and run.state.is_final() for run in runs)
    return final and all(by_task(runs, name) for name in names)


async def task_runs(flow_run_id: UUID, names: Iterable[str] = (), timeout: float = RECORD_TIMEOUT) -> list[TaskRun]:
    """Task runs of a flow run and of its child flow runs, once recorded: all final, the named
    tasks present and the count unchanged between two reads."""
    names = tuple(names)
    deadline = time.monotonic() + timeout
    previous = -1
    while True:
        runs = await _read(flow_run_id)
        if (settled(runs, names) and len(runs) == previous) or time.monotonic() > deadline:
            return runs
        previous = len(runs)
        await asyncio.sleep(0.3)


def by_task(runs: list[TaskRun], name: str) -> list[TaskRun]:
    return [run for run in runs if run.task_key.startswith(name) or run.name.startswith(name)]
