"""Start-up of the ``archlab`` command: --help, --version, list, and the first step of a training run.

Each command runs as a fresh process (``python -m archlab ...``) ``--repeats`` times; printed are
the median wall time from start to exit and the median CPU time of the process (user + system,
steadier than the wall clock on a busy machine). For ``archlab train`` both are taken when the
progress line of its first completed step appears (``log_every=1``), so they also count that step;
the run is the speedrun recipe for 2 steps.

    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --repeats 9 --data path/to/input.txt

The targets: --help, --version and list under 0.3 s; the first training step within 3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speedrun import find_text  # noqa: E402


def cpu_seconds_so_far(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux: /proc/PID/stat), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, ValueError, IndexError):
        return None


def timed(cmd: list[str], until: str | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to exit -- or to the first stderr line starting with ``until``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    at = cpu_at = None
    for line in proc.stderr:
        if until and at is None and line.startswith(until):
            at, cpu_at = time.perf_counter() - start, cpu_seconds_so_far(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0 or (until and at is None):
        raise SystemExit(f"`{' '.join(cmd)}` failed (exit {os.waitstatus_to_exitcode(status)})")
    cpu = usage.ru_utime + usage.ru_stime
    return (at, cpu_at if cpu_at is not None else float("nan")) if until else (wall, cpu)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data", help="text for the training run (default: Tiny Shakespeare)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the training run (0 = torch's default)")
    args = p.parse_args(argv)
    archlab = [sys.executable, "-m", "archlab"]
    with tempfile.TemporaryDirectory() as tmp:
        train = [*archlab, "train", "--config", str(REPO / "configs" / "speedrun_char.yaml"), "--data",
                 find_text(args.data), "--max-steps", "2", "--set", "log_every=1", "--out", str(Path(tmp) / "run"),
                 "--overwrite", *(["--threads", str(args.threads)] if args.threads else [])]
        cases = {"archlab --help": ([*archlab, "--help"], None, 0.3),
                 "archlab --version": ([*archlab, "--version"], None, 0.3),
                 "archlab list": ([*archlab, "list"], None, 0.3),
                 "archlab train: first step": (train, "step 1/", 3.0)}
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        print(f"{os.cpu_count()} CPUs, load average at start {load}; median of {args.repeats} fresh processes each")
        print(f"{'command':28}{'wall s':>8}{'cpu s':>8}{'target s':>10}")
        times = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (cmd, until, _) in cases.items():
                times[name].append(timed(cmd, until))
        for name, (_, _, target) in cases.items():
            wall = statistics.median(t[0] for t in times[name])
            cpu = statistics.median(t[1] for t in times[name])
            print(f"{name:28}{wall:8.2f}{cpu:8.2f}{target:10.1f}")


if __name__ == "__main__":
    main()
