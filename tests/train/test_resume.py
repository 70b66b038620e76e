"""Exact resume: a run killed with SIGKILL at random moments and resumed ends bit-identical."""

from __future__ import annotations

import random
import signal
import subprocess

import pytest
import torch

from archlab.train import checkpointing as ckpt
from tests.train.helpers import start_train, weights

# A tiny MLP on the 8x8 digits; dropout on, so the RNG states must be restored exactly too.
STEPS = 60
ARGS = ["--task", "classify", "--model", "mlp", "--data", "digits", "--max-steps", str(STEPS),
        "--save-every", "7", "--eval-every", "20", "--deterministic", "--seed", "3",
        "--set", "hidden=32", "--set", "dropout=0.2", "--set", "batch_size=16", "--set", "log_every=1",
        "--set", "warmup_steps=5"]


def kill_at(proc: subprocess.Popen, marker) -> str:
    """Read stderr until ``marker(line)`` is true, then SIGKILL; returns the line it stopped at."""
    for line in proc.stderr:
        if marker(line):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return line
    proc.wait(timeout=60)
    raise AssertionError(f"the run ended (rc={proc.returncode}) before the kill point")


def step_of(line: str) -> int | None:
    if line.startswith("step "):
        return int(line.split()[1].split("/")[0])
    return None


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    rng = random.Random(1234)
    ref = start_train([*ARGS, "--out", str(tmp_path / "ref")])
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err

    out = tmp_path / "run"
    kills = []
    # Two kills at random steps of the run (between and right after checkpoints)...
    for target in sorted(rng.sample(range(3, STEPS - 3), 2)):
        proc = start_train([*ARGS, "--out", str(out), "--resume"])
        line = kill_at(proc, lambda l, t=target: (step_of(l) or -1) >= t)
        kills.append(step_of(line))
    # ...and one inside a checkpoint write, paused there by the test hook.
    proc = start_train([*ARGS, "--out", str(out), "--resume"], ARCHLAB_TEST_CHECKPOINT_PAUSE="30")
    kill_at(proc, lambda l: l.startswith("checkpoint write paused"))
    unfinished = [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert len(unfinished) == 1, "the kill should have left a half-written checkpoint"
    previous = ckpt.latest_checkpoint(out)
    assert previous is not None and not previous.name.startswith(".")
    ckpt.verify(previous)  # the previous checkpoint stays whole and loadable
    state = torch.load(previous / ckpt.STATE_FILE, weights_only=True)
    assert state["step"] == int(previous.name.split("-")[1])

    last = start_train([*ARGS, "--out", str(out), "--resume"])
    _, err = last.communicate(timeout=300)
    assert last.returncode == 0, err
    assert "resumed from" in err
    assert not any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())

    a, b = weights(tmp_path / "ref"), weights(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kills at steps {kills}"
    # The metrics of the resumed run hold each training step once, as the uninterrupted run's do.
    steps = [l for l in (out / "metrics.jsonl").read_text().splitlines() if '"split": "train"' in l]
    assert len(steps) == STEPS
