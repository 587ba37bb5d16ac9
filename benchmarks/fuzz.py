"""Fuzz the endpoint server from its own OpenAPI description with schemathesis: no 5xx allowed.

``.venv/bin/python -m benchmarks.fuzz [--examples 300] [--seed 0] [--keep]``

Starts the same stack as ``benchmarks.load`` (the real trained win-probability model deployed
on a running ``python -m deployments.serve``), loads ``/openapi.json`` and, for every operation,
draws ``--examples`` cases in each of schemathesis' two modes (positive: bodies the schema allows;
negative: bodies, headers and parameters it does not), each sent with the endpoint key. For
``POST /score/{key}`` half of the cases keep the generated key and half are pinned to
``win_probability``, so generated bodies reach the deployed model and not only the 404 path.
Then ``--examples`` bodies with the model's real columns and arbitrary JSON values (any size of
number, text, null, nested lists, rows of the wrong width, any ``params``), which reach the model.

A 5xx answer, a transport error or a server that stopped answering ``/health`` is a failure;
prints the cases run per operation and mode with the statuses seen, and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class FuzzResult:
    cases: Counter = field(default_factory=Counter)  # (operation, mode) -> cases sent
    statuses: dict[tuple[str, str], Counter] = field(default_factory=dict)  # (operation, mode) -> statuses seen
    failures: list[str] = field(default_factory=list)
    unsatisfiable: list[tuple[str, str]] = field(default_factory=list)  # nothing to generate

    def record(self, label: tuple[str, str], status: int | None, detail: str) -> None:
        self.cases[label] += 1
        self.statuses.setdefault(label, Counter())[status] += 1
        if status is None or status >= 500:
            self.failures.append(f"{label[0]} ({label[1]}): {status} {detail}")


def fuzz(base_url: str, key: str, *, examples: int, seed: int = 0, pinned_key: str | None = "win_probability") -> FuzzResult:
    """Run schemathesis against ``base_url`` and return what it saw (raises nothing on 5xx)."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    auth = {"Authorization": f"Bearer {key}"}
    result = FuzzResult()
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        for operation in schema.get_all_operations():
            op = operation.ok()
            variants: list[dict] = [{}]
            if pinned_key is not None and "key" in op.path_parameters:  # type: ignore[operator]
                variants.append({"path_parameters": {"key": pinned_key}})
            for mode in GenerationMode:
                for variant in variants:
                    label = (f"{op.method.upper()} {op.path}" + (f" key={pinned_key}" if variant else ""), mode.value)
                    strategy = op.as_strategy(generation_mode=mode, headers=auth, **variant)
                    send = _sender(client, base_url, result, label)
                    run = settings(
                        max_examples=max(1, examples // len(variants)), deadline=None, database=None,
                        phases=[Phase.generate], suppress_health_check=list(HealthCheck),
                    )(given(case=strategy)(send))
                    try:
                        hypothesis_seed(seed)(run)()
                    except Unsatisfiable:  # nothing to vary (a negative case of an operation without inputs)
                        result.unsatisfiable.append(label)
        try:
            if client.get("/health").status_code != 200:
                result.failures.append("/health did not answer 200 after fuzzing")
        except httpx.HTTPError as error:
            result.failures.append(f"/health failed after fuzzing: {error}")
    return result


def fuzz_values(base_url: str, key: str, endpoint: str, columns: list[str], *, examples: int, seed: int = 0) -> FuzzResult:
    """Bodies with the endpoint's real columns and arbitrary JSON values: numbers of any size,
    text, nulls, booleans, nested lists, rows of the wrong width, ``params`` of any kind. Reaches
    the model, which the schema-driven cases rarely do (the schema cannot name each model's columns)."""
    import json

    from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings
    from hypothesis import strategies as st

    value = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False), st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.none(), st.booleans(), st.text(max_size=6), st.lists(st.integers(), max_size=2),
    )
    row = st.one_of(st.lists(value, min_size=len(columns), max_size=len(columns)), st.lists(value, max_size=len(columns) + 2))
    params = st.one_of(st.none(), st.fixed_dictionaries({"top_factors": st.one_of(st.booleans(), value)}))
    body = st.fixed_dictionaries({"input_data": st.fixed_dictionaries({"columns": st.just(columns), "data": st.lists(row, max_size=20)}),
                                  "params": params})
    label = (f"POST /score/{endpoint} (real columns, any values)", "values")
    result = FuzzResult()
    with httpx.Client(base_url=base_url, timeout=120.0, headers={"Authorization": f"Bearer {key}"}) as client:

        @hypothesis_seed(seed)
        @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(payload=body)
        def send(payload: dict) -> None:
            if payload["params"] is None:
                del payload["params"]
            try:
                response = client.post(f"/score/{endpoint}", content=json.dumps(payload).encode(),
                                       headers={"Content-Type": "application/json"})
            except httpx.HTTPError as error:
                result.record(label, None, f"{type(error).__name__}: {error}")
                return
            result.record(label, response.status_code, response.text[:300])

        send()
    return result


def _sender(client: httpx.Client, base_url: str, result: FuzzResult, label: tuple[str, str]):
    """The body of one hypothesis test: send the case as prepared, record the status."""

    def send(case) -> None:
        request = case.as_transport_kwargs(base_url=base_url)
        try:
            response = client.request(
                request["method"], request["url"], headers=request.get("headers"),
                params=request.get("params"), content=_content(request),
            )
        except httpx.HTTPError as error:
            result.record(label, None, f"{type(error).__name__}: {error}")
            return
        result.record(label, response.status_code, response.text[:300])

    return send


def _content(request: dict) -> bytes | None:
    """The body as bytes, whichever form schemathesis prepared it in."""
    import json

    if request.get("data") is not None:
        data = request["data"]
        return data if isinstance(data, bytes) else str(data).encode()
    if "json" in request:
        return json.dumps(request["json"]).encode()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="cases per operation and generation mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (model, lake, server log)")
    parser.add_argument("--no-readme", action="store_true", help="print the section, do not write benchmarks/README.md")
    args = parser.parse_args(argv)

    from benchmarks.load import serving_stack
    from benchmarks.readme_section import replace_section, stamp

    with serving_stack("fuzz-", keep=args.keep) as stack:
        load_before = os.getloadavg()[0]
        result = fuzz(stack.url, stack.key, examples=args.examples, seed=args.seed)
        values = fuzz_values(stack.url, stack.key, "win_probability", stack.columns, examples=args.examples, seed=args.seed)
        result.cases.update(values.cases)
        result.statuses.update(values.statuses)
        result.failures.extend(values.failures)
        log_text = stack.log_path.read_text(errors="replace")
    tracebacks = log_text.count("Traceback")
    leaked = stack.key in log_text
    failed = bool(result.failures) or bool(tracebacks) or leaked
    rows = []
    for (operation, mode), count in sorted(result.cases.items()):
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(result.statuses[(operation, mode)].items(), key=lambda kv: str(kv[0])))
        rows.append(f"| {operation} | {mode} | {count:,} | {statuses} |")
    outcome = (f"{sum(result.cases.values()):,} cases, {len(result.failures)} failures (5xx, transport errors), "
               f"{tracebacks} traceback(s) and {'the key' if leaked else 'no key'} in the server log: "
               + ("**failed**" if failed else "passed"))
    command = "`.venv/bin/python -m benchmarks.fuzz" + (
        f" --examples {args.examples}" if args.examples != 300 else "") + (f" --seed {args.seed}" if args.seed else "") + "`"
    section = "\n".join([
        "## Fuzzing the endpoint server", "",
        f"Command: {command} (this section is written by it; about 3 min with training). " + DESCRIPTION, "",
        f"Measured {stamp()}; load average {load_before:.1f} (1 min) before fuzzing; schemathesis {_version()}, "
        f"seed {args.seed}.", "",
        "| operation | mode | cases | statuses |",
        "|---|---|---:|---|",
        *rows, "",
        f"Outcome: {outcome}.",
    ])
    print(section)
    if not args.no_readme:
        replace_section("serving-fuzz", section)
    for failure in result.failures[:20]:
        print(f"failure: {failure}", file=sys.stderr)
    return 1 if failed else 0


DESCRIPTION = (
    "The same stack as the load test: the real trained win-probability model deployed on a running server. "
    "schemathesis reads the server's own `/openapi.json` and generates requests for every operation in its "
    "positive mode (bodies the schema allows) and negative mode (bodies, headers and parameters it does not), "
    "all sent with the endpoint key; for `POST /score/{key}` half the cases keep the generated key and half "
    "are pinned to the win-probability endpoint. Then bodies with the model's real columns and arbitrary JSON "
    "values (numbers of any size, text, nulls, booleans, nested lists, rows of the wrong width, any `params`), "
    "which reach the model. A 5xx, a transport error, a traceback in the server log or the key in the server "
    "log fails the run. The GET operations take no input, so each has one case and no negative mode. "
    "`tests/serving/test_fuzz_openapi.py` runs a bounded version in every `make test`."
)


def _version() -> str:
    from importlib.metadata import version

    return version("schemathesis")


if __name__ == "__main__":
    sys.exit(main())
