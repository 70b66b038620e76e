"""Two processes under torchrun (gloo, loopback) give the weights of one process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.train.helpers import env, weights

# dropout=0: each process draws its own dropout masks, so only a dropout-free model can match.
COMMON = ["--task", "classify", "--model", "mlp", "--data", "digits", "--max-steps", "8", "--seed", "5",
          "--set", "hidden=32", "--set", "dropout=0", "--set", "batch_size=32", "--set", "lr=3e-3",
          "--set", "log_every=4"]


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_equal_one_with_accumulation(tmp_path):
    one = subprocess.run([sys.executable, "-m", "archlab", "train", *COMMON, "--out", str(tmp_path / "one")],
                         env=env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    # 2 processes x 2 accumulation micro-steps x 8 examples = the same global batch of 32.
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "archlab", "train", *COMMON, "--set", "grad_accum=2", "--out", str(tmp_path / "two")],
        env=env(MASTER_ADDR="127.0.0.1"), capture_output=True, text=True, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-5, k
    # Only rank 0 logs: one line per logged step, not two.
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert sum('"split": "train"' in l for l in lines) == 2
    # One summary at the start, the metrics once at the end (not once per process).
    assert two.stderr.count("train mlp (") == 1 and "x 2 processes" in two.stderr
    assert two.stderr.count("done: step 8") == 1
    assert [l.split()[0] for l in two.stdout.splitlines()] == ["loss", "accuracy"]

