"""Flow `rollback-model`: move an endpoint's traffic back to the previous or a given version."""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

import asyncio
from dataclasses import asdict

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from deployments import endpoints
from tasks import artifacts
from tasks.promote import record_serving


@flow(name="rollback-model")
async def rollback_model(endpoint: str, to_version: str | None = None, reason: str = "manual rollback") -> dict:
    """Serve the previous deployment of ENDPOINT again, or registered version TO_VERSION.

    An industry model is rolled back on its own slot, e.g. ENDPOINT risk_scoring_industry/software."""
    try:
        endpoints.check_key(endpoint)  # an endpoint key, or an industry's slot: risk_scoring_industry/<industry>
    except endpoints.DeployError as error:
        raise ValueError(f"endpoint={endpoint!r}: {error}") from None
    result = await asyncio.to_thread(endpoints.rollback, endpoint, to_version, reason)
    get_run_logger().info("%s now serves %s v%s (%s)", endpoint, result.model_name, result.version, reason)
    # The registry follows the endpoint: `champion` moves back and the ledger records why.
    await asyncio.to_thread(record_serving, result, "rollback", reason)
    await create_markdown_artifact(
        markdown=f"# Rollback of `{endpoint}`\n\nNow serving **[{result.model_name} v{result.version}]"
        f"({artifacts.model_version_url(result.model_name, result.version)})** "
        f"(was v{result.previous_version or '-'}).\n\nReason: {reason}\n",
        key=artifacts.artifact_key("rollback", endpoint),
    )
    return asdict(result)


if __name__ == "__main__":
    raise SystemExit(cli.main(rollback_model, render=str))
