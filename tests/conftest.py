"""Shared test helpers. Tests mirror the package: tests/nn, tests/models, tests/data, tests/train, tests/cli."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Two cores: keep torch from oversubscribing them when several processes run.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny models: their kernels are too small to gain from a
    second thread, and on a machine busy with other work two threads that wait for each other make
    each step many times slower (measured here: 1.5 s instead of 2 ms for a tiny LSTM step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def run_cli(*args: str, cwd=None, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m archlab ARGS`` in a fresh process; returns the completed process (text)."""
    full_env = {**os.environ, **(env or {})}
    # The checkout under test wins over any installed copy.
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "archlab", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli
