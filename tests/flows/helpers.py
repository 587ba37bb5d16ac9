"""Read what Prefect recorded about a flow run: its task runs by name, with states and attempts."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId, TaskRunFilter
from prefect.client.schemas.objects import TaskRun


async def task_runs(flow_run_id: UUID) -> list[TaskRun]:
    """Task runs of a flow run and of its child flow runs."""
    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
        ids = [flow_run_id, *(child.id for child in children)]
        return await client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": ids}))


def by_task(runs: list[TaskRun], name: str) -> list[TaskRun]:
    return [run for run in runs if run.task_key.startswith(name) or run.name.startswith(name)]
