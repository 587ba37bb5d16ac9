"""``python -m deployments.serve``: serve every endpoint key on 127.0.0.1 at the configured port.

Deploy with ``deployments.endpoints.deploy`` (or the flows) whether or not this runs; a running
server picks each change up within ``--poll-seconds`` without a restart.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from salesrisk.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m deployments.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.serve_host, help="bind address (default SALESRISK_SERVE_HOST)")
    parser.add_argument("--port", type=int, default=settings.serve_port, help="port (default SALESRISK_SERVE_PORT)")
    parser.add_argument("--max-body-mb", type=float, default=settings.serve_max_body_mb,
                        help="largest request body accepted (default SALESRISK_SERVE_MAX_BODY_MB, else 16)")
    parser.add_argument("--max-rows", type=int, default=settings.serve_max_rows,
                        help="most rows scored in one request (default SALESRISK_SERVE_MAX_ROWS, else 10000)")
    parser.add_argument("--poll-seconds", type=float, default=0.2, help="how often the endpoint state is checked")
    parser.add_argument("--log-flush-rows", type=int, default=20_000, help="write inference logs after this many rows")
    parser.add_argument("--log-flush-seconds", type=float, default=5.0, help="... or after this many seconds")
    parser.add_argument("--log-level", default="info")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from salesrisk import runtime

    runtime.quiet_libraries()
    import uvicorn

    from deployments.local import keys, state
    from deployments.serve.app import ServeConfig, create_app

    settings = get_settings()
    config = ServeConfig(
        state_path=state.state_path(settings),
        lake=settings.lake,
        key=keys.endpoint_key(settings),
        base_url=f"http://{args.host}:{args.port}",
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_rows=args.max_rows,
        poll_seconds=args.poll_seconds,
        log_flush_rows=args.log_flush_rows,
        log_flush_seconds=args.log_flush_seconds,
    )
    print(f"serving {', '.join(sorted(_keys()))} at {config.base_url}/score/<key> "
          f"(key: {keys.key_path(settings) if settings.endpoint_key is None else 'SALESRISK_ENDPOINT_KEY'})",
          file=sys.stderr, flush=True)
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def _keys() -> tuple[str, ...]:
    from salesrisk import catalog

    return catalog.ENDPOINT_KEYS


if __name__ == "__main__":
    sys.exit(main())
