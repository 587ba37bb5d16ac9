"""Why the trajectory trainer runs torch on one thread: one training epoch timed at 1 and 2 threads.

Usage: .venv/bin/python -m benchmarks.trajectory_threads [--windows 20000] [--repeats 3]

Each measurement is a fresh process (torch's thread pool is fixed once used) training one epoch
of ``models.risk_trajectory.TrajectoryNet`` (hidden 32, batch 256) on random 30-step windows of
3 features; it reports the median wall and CPU seconds per thread count and their ratio. On a
2-core machine shared with other work, two intra-op threads spin against each other and the rest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_EPOCH = """
import json, sys, time, torch
from models.risk_trajectory import TrajectoryNet
threads, n = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
x, y = torch.randn(n, 30, 3), torch.randn(n, 3)
lengths = torch.randint(1, 31, (n,))
net = TrajectoryNet(3, 32)
optimizer = torch.optim.Adam(net.parameters(), lr=0.005)
wall, cpu = time.perf_counter(), time.process_time()
for batch in torch.randperm(n).split(256):
    loss = ((net(x[batch], lengths[batch]) - y[batch]) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""


def epoch_seconds(threads: int, windows: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _EPOCH, str(threads), str(windows)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trajectory_threads", description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    medians = {}
    for threads in (1, 2):
        runs = [epoch_seconds(threads, args.windows) for _ in range(args.repeats)]
        medians[threads] = {k: statistics.median(r[k] for r in runs) for k in ("wall", "cpu")}
        print(f"{threads} thread(s): median wall {medians[threads]['wall']:.2f} s, cpu {medians[threads]['cpu']:.2f} s "
              f"over {args.repeats} runs of one epoch on {args.windows} windows")
    print(f"ratio 2 threads / 1 thread: wall {medians[2]['wall'] / medians[1]['wall']:.2f}, "
          f"cpu {medians[2]['cpu'] / medians[1]['cpu']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
