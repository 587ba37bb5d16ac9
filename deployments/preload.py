"""A preloaded interpreter that runs ``python -m module args`` steps as forks of itself.

Every trainer and preparation imports MLflow, pandas, polars, pyarrow and scikit-learn before its
own code runs: about 5 s of CPU per process, a third of a cold retrain-all on 2 cores. The local
compute backend (deployments/compute.py) starts this module once as ``python -m
deployments.preload``; it imports :data:`PRELOAD`, then forks one child per step. The child sets
the step's environment, working directory and output files, runs the module as ``__main__``
exactly as ``python -m`` would, and exits with its code. So a step is still its own process, with
its own pid, exit code and signals (a killed trainer is a killed process), and the command line is
the one an Azure ML job runs.

Protocol, one JSON object per line: the client writes ``{"id", "module", "args", "env", "cwd",
"stdout", "stderr"}`` to the server's stdin; the server answers ``{"id", "pid"}`` once the step
started and ``{"id", "exit"}`` when it ended (a negative exit is the signal that killed it).
multiprocessing's forkserver does the same but re-imports the caller's ``__main__`` script in
every child (a flow file, or pytest), which is why it is not used.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import queue
import runpy
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path

# Imported once by the server. Checked in a fork: polars, CatBoost, pyarrow and torch work there.
# torch is only imported, never run, in the server: its thread pools start at a step's first
# parallel operation, in the step's own process (a pool started before a fork can hang the fork).
# torch._dynamo is what ``use_deterministic_algorithms`` and Lightning import next: 2 s more.
# Lightning and NeuralProphet are left out: their imports configure logging (a handler of their
# own when the root logger has none), which a step must do in its own order, as a fresh process.
PRELOAD = (
    "numpy", "pandas", "polars", "pyarrow.parquet", "sklearn.metrics", "catboost", "matplotlib",
    "mlflow", "mlflow.pyfunc", "mlflow.store.tracking.sqlalchemy_store", "torch", "torch._dynamo",
)
# Variables that change how a new interpreter starts: a step whose environment differs from the
# server's in one of them runs as a fresh process instead (deployments/compute.py).
STARTUP_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "VIRTUAL_ENV")


class PreloadedSteps:
    """Client of one server process; thread-safe (steps run from several worker threads)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.startup = {name: env.get(name) for name in STARTUP_VARIABLES}
        self._server = subprocess.Popen(
            [sys.executable, "-m", "deployments.preload"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, text=True, bufsize=1,
        )
        self._lock = threading.Lock()
        self._next = 0
        self._waiting: dict[int, queue.Queue[dict]] = {}
        threading.Thread(target=self._read, name="preloaded-steps", daemon=True).start()
        atexit.register(self.close)

    @property
    def alive(self) -> bool:
        return self._server.poll() is None

    def starts_like(self, env: dict[str, str]) -> bool:
        """Whether an interpreter with ``env`` starts as the server did."""
        return all(env.get(name) == value for name, value in self.startup.items())

    def fits(self, env: dict[str, str]) -> bool:
        """Whether a step with ``env`` can fork from this server (else run it as a fresh process)."""
        return self.alive and self.starts_like(env)

    def run(self, module: str, args: Sequence[str], env: dict[str, str], stdout: Path, stderr: Path,
            timeout: float | None = None) -> int | None:
        """Exit code of the step (negative: the signal that ended it); None when it outlived ``timeout``
        (it is killed first)."""
        answers: queue.Queue[dict] = queue.Queue()
        with self._lock:
            self._next += 1
            step = self._next
            self._waiting[step] = answers
            request = {"id": step, "module": module, "args": list(args), "env": env, "cwd": os.getcwd(),
                       "stdout": str(stdout), "stderr": str(stderr)}
            self._server.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
            self._server.stdin.flush()  # type: ignore[union-attr]
        try:
            started = answers.get()
            if "exit" in started:  # the server died before the step started
                return int(started["exit"])
            try:
                return int(answers.get(timeout=timeout)["exit"])
            except queue.Empty:
                os.kill(started["pid"], signal.SIGKILL)
                answers.get()
                return None
        finally:
            with self._lock:
                self._waiting.pop(step, None)

    def _read(self) -> None:
        for line in self._server.stdout:  # type: ignore[union-attr]
            answer = json.loads(line)
            with self._lock:
                waiting = self._waiting.get(answer["id"])
            if waiting is not None:
                waiting.put(answer)
        with self._lock:  # the server is gone: no step still waiting may hang
            for waiting in self._waiting.values():
                waiting.put({"pid": 0, "exit": -int(signal.SIGKILL)})

    def close(self) -> None:
        if self._server.poll() is None and not self._next:
            # never used (a run whose steps were all cached): it may still be importing, and
            # nothing of it is needed
            self._server.terminate()
        if self._server.poll() is None:
            self._server.stdin.close()  # type: ignore[union-attr]
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()


# --- the server ---------------------------------------------------------------------------------


def warm() -> None:
    """Fill what every step would compute again, so each fork inherits it: MLflow's map of the
    installed distributions (``importlib.metadata.packages_distributions``, 0.5 to 1.5 s), which it
    builds on a model's first save or load to check the model's requirements."""
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    warn_dependency_requirement_mismatches(["mlflow"])


def serve() -> None:
    for name in PRELOAD:
        __import__(name)
    warm()
    out = sys.stdout
    write = threading.Lock()
    steps: dict[int, int] = {}  # pid -> request id
    started = threading.Condition()

    def answer(message: dict) -> None:
        with write:
            out.write(json.dumps(message) + "\n")
            out.flush()

    def reap() -> None:
        while True:
            with started:
                while not steps:
                    started.wait()
            pid, status = os.wait()
            with started:
                step = steps.pop(pid, None)
            if step is not None:
                answer({"id": step, "exit": os.waitstatus_to_exitcode(status)})

    threading.Thread(target=reap, daemon=True).start()
    for line in sys.stdin:
        request = json.loads(line)
        with started:
            pid = os.fork()
            if pid == 0:
                run_step(request)  # never returns
            steps[pid] = request["id"]
            started.notify()
        answer({"id": request["id"], "pid": pid})
    while steps:  # stdin closed: let running steps finish
        with started:
            started.wait(0.2)


def run_step(request: dict) -> None:
    """In the fork: become ``python -m module args`` and exit with its code, as the process would."""
    code = 1
    try:
        for fd, key in ((1, "stdout"), (2, "stderr")):
            handle = os.open(request[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        # unbuffered, as PYTHONUNBUFFERED makes a fresh process: a killed step's last words are kept
        sys.stdout = io.TextIOWrapper(open(1, "wb", buffering=0, closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(open(2, "wb", buffering=0, closefd=False), write_through=True,
                                      errors="backslashreplace")
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # not the server's request pipe
        os.close(null)
        sys.stdin = open(0, closefd=False)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path.insert(0, request["cwd"])  # as ``python -m`` puts the working directory first
        sys.argv = [request["module"], *request["args"]]
        code = 0
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        if isinstance(exit.code, int) or exit.code is None:
            code = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - reported as the interpreter would, then exit 1
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()  # a fork skips them otherwise (MLflow ends its runs there)
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):  # pre-fork handlers hold the originals
                if stream is not None:
                    stream.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    serve()
    # Every step has ended and been answered: nothing is left to write, and tearing down an
    # interpreter holding torch, MLflow and pandas took 1.8 s of every run's exit (the caller waits).
    sys.stdout.flush()
    os._exit(0)
