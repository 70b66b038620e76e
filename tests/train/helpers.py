"""Shared helpers of the trainer tests: run `archlab train` in a process we can kill."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    e = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return e


def start_train(args: list[str], **extra_env: str) -> subprocess.Popen:
    """``python -m archlab train ARGS`` with stderr piped (plain progress lines: not a TTY)."""
    return subprocess.Popen([sys.executable, "-m", "archlab", "train", *args], env=env(**extra_env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def weights(directory: Path) -> dict:
    return load_file(str(Path(directory) / "model.safetensors"))
