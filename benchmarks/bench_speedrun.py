"""Time to a validation loss on Tiny Shakespeare: nanoGPT's CPU configuration against the speedrun recipe.

Both are the real command a user runs, timed from process start to the printed validation loss
(the whole validation split: the last 10% of the text), one after the other and in turns when
``--repeats`` > 1, on the same threads, data and seed:

    nanoGPT CPU config  archlab train --config configs/gpt_shakespeare_char.yaml   (evaluation only at
                        the end, no intermediate checkpoints, as benchmarks/bench_train_gpt.py runs it)
    speedrun            archlab train --config configs/speedrun_char.yaml

nanoGPT's configuration ends near 1.89 (1.8857 in nanoGPT's own train.py); the speedrun's target
is <= 1.88 in at most a third of that time. Printed per run: seconds to the printed loss, the loss,
peak resident memory; then medians and the ratio of the medians.

    python benchmarks/bench_speedrun.py                      # once each
    python benchmarks/bench_speedrun.py --threads 1 --repeats 3
    python benchmarks/bench_speedrun.py --data path/to/input.txt

Data: ``../shared/data/tinyshakespeare.txt`` beside the checkout where present (a benchmark-only
copy), else the product's own download of Tiny Shakespeare (cached, SHA-256 verified).
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
RECIPES = {
    "nanoGPT CPU config": (REPO / "configs" / "gpt_shakespeare_char.yaml",
                           ["--set", "eval_every=0", "--set", "eval_batches=0", "--set", "save_every=0"]),
    "speedrun": (REPO / "configs" / "speedrun_char.yaml", []),
}
TARGET = 1.88


def find_text(given: str | None) -> str:
    if given:
        return given
    for base in (REPO.parent, REPO.parent.parent):
        path = base / "shared" / "data" / "tinyshakespeare.txt"
        if path.is_file():
            return str(path)
    return "tinyshakespeare"


def run(name: str, args, data: str, out: Path) -> dict:
    """One `archlab train` process: seconds from its start to the printed loss, the loss, peak RSS."""
    recipe, extra = RECIPES[name]
    cmd = [sys.executable, "-m", "archlab", "train", "--config", str(recipe), "--data", data, "--out", str(out),
           "--seed", str(args.seed), *extra]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    loss, at = None, None
    for line in proc.stdout:  # `archlab train` prints its final metrics on stdout, "loss 1.8765" first
        if line.startswith("loss ") and loss is None:
            at = time.perf_counter() - start
            loss = float(line.split()[1])
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or loss is None:
        raise SystemExit(f"{name}: `{' '.join(cmd)}` failed (exit {proc.returncode}):\n{err[-2000:]}")
    peak_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
    return {"seconds": at, "loss": loss, "peak_mb": peak_mb, "cpu_s": usage.ru_utime + usage.ru_stime}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--repeats", type=int, default=1, help="runs of each, taking turns (medians reported)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads of both runs (0 = torch's default)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--data", help="a text file (default: Tiny Shakespeare)")
    args = p.parse_args(argv)
    data = find_text(args.data)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"data {data}; threads {args.threads or 'torch default'}; seed {args.seed}; {os.cpu_count()} CPUs, "
          f"load average at start {load}")
    print(f"{'run':22}{'s to loss':>10}{'val loss':>10}{'cpu s':>8}{'peak MB':>9}")
    results: dict[str, list[dict]] = {name: [] for name in RECIPES}
    names = list(RECIPES)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in names[r % 2:] + names[:r % 2]:
                res = run(name, args, data, Path(tmp) / f"{name.split()[0]}-{r}")
                results[name].append(res)
                print(f"{name:22}{res['seconds']:10.1f}{res['loss']:10.4f}{res['cpu_s']:8.1f}{res['peak_mb']:9.0f}",
                      flush=True)
    med = {name: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for name, rs in results.items()}
    nano, speed = med["nanoGPT CPU config"], med["speedrun"]
    print(f"median over {args.repeats} run(s): nanoGPT CPU config {nano['seconds']:.1f} s to {nano['loss']:.4f}; "
          f"speedrun {speed['seconds']:.1f} s to {speed['loss']:.4f} (target <= {TARGET})")
    print(f"speedrun is {nano['seconds'] / speed['seconds']:.2f}x faster to its loss (wall), "
          f"{nano['cpu_s'] / speed['cpu_s']:.2f}x in CPU seconds; peak memory {speed['peak_mb']:.0f} MB vs "
          f"{nano['peak_mb']:.0f} MB; target reached: {'yes' if speed['loss'] <= TARGET else 'NO'}")


if __name__ == "__main__":
    main()
