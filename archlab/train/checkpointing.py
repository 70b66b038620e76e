"""Training checkpoints that survive a crash at any moment, and know when they are damaged.

A run directory holds::

    OUT/checkpoints/step-00000100/
        config.json         model name and config (archlab.checkpoint format)
        model.safetensors   weights of the unwrapped, uncompiled module
        trainer_state.pt    optimiser, scheduler, grad scaler, step, data position, RNG states --
                            only tensors and plain containers: torch.load(weights_only=True) reads it
        task.json, ...      what the task keeps beside the weights (tokenizer, class names)
        manifest.json       size and SHA-256 of every file above, written last

A checkpoint is written into a hidden temporary directory, every file fsynced, and renamed into
place in one step, so a kill mid-write leaves only a temporary directory (removed on the next start)
and the previous checkpoints untouched. ``latest_checkpoint`` checks the manifest of the newest
checkpoint and falls back to the one before it when a file is missing, truncated or altered;
a resumed run sets the damaged ones after it aside (``checkpoints/damaged/``), so that pruning,
which keeps the ``keep_last`` newest, only ever weighs checkpoints of the run's own history.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.checkpoint import save_pretrained
from archlab.errors import CheckpointError
from archlab.utils.io import atomic_path, fsync_dir, write_text_atomic

STATE_FILE = "trainer_state.pt"
MANIFEST_FILE = "manifest.json"
TASK_FILE = "task.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
# Test hook: seconds to pause in the middle of a checkpoint write, so that a test can kill the
# process while it is writing.
_PAUSE_ENV = "ARCHLAB_TEST_CHECKPOINT_PAUSE"


# --------------------------------------------------------------------------------------------
# RNG states as tensors and plain containers


def rng_state() -> dict[str, Any]:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------
# Manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != MANIFEST_FILE
                   and not p.name.startswith("."))
    manifest = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    write_text_atomic(directory / MANIFEST_FILE, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def verify(directory: str | os.PathLike, required: tuple[str, ...] = ()) -> None:
    """Raise ``CheckpointError`` naming the first file of ``directory`` that fails its manifest, or
    the first of ``required`` that the manifest does not vouch for."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} has no {MANIFEST_FILE} (an unfinished write?)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{manifest_path} is corrupted: {' '.join(str(e).split())}") from None
    well_formed = isinstance(manifest, dict) and all(
        isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
        for e in manifest.values())
    if not well_formed:
        raise CheckpointError(f"{manifest_path} is corrupted: expected {{file: {{size, sha256}}}} for every file")
    for name in required:
        if name not in manifest:
            raise CheckpointError(f"checkpoint {str(directory)!r} is incomplete: its {MANIFEST_FILE} does not list {name}")
    for name, entry in manifest.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {str(directory)!r} is incomplete: {name} is missing")
        size = path.stat().st_size
        if size != entry["size"]:
            raise CheckpointError(
                f"checkpoint {str(directory)!r} is corrupted: {name} has {size} bytes, "
                f"the manifest says {entry['size']} (truncated?)"
            )
        if _sha256(path) != entry["sha256"]:
            raise CheckpointError(f"checkpoint {str(directory)!r} is corrupted: {name} fails its SHA-256 check")


# --------------------------------------------------------------------------------------------
# Writing, finding, pruning


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def write_model_files(directory: Path, model: torch.nn.Module, task) -> None:
    """``config.json`` + ``model.safetensors`` + the task's files (``task.json``, tokenizer...)."""
    save_pretrained(model, directory)  # unwraps DDP / torch.compile itself
    write_text_atomic(directory / TASK_FILE, json.dumps(task.describe(), indent=2, sort_keys=True) + "\n")
    task.save(directory)


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, task, state: dict[str, Any],
                    keep_last: int) -> Path:
    """Write checkpoint ``step`` atomically, then keep only the newest ``keep_last``."""
    final = step_dir(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write_model_files(tmp, model, task)
    pause = float(os.environ.get(_PAUSE_ENV, "0") or 0)
    if pause > 0:
        print(f"checkpoint write paused for {pause} s ({tmp})", file=sys.stderr, flush=True)
        time.sleep(pause)
    with atomic_path(tmp / STATE_FILE) as t:
        torch.save(state, t)
    write_manifest(tmp)
    fsync_dir(tmp)
    if final.exists():  # the same step written again (e.g. a signal right after a periodic save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    prune(run_dir, keep_last, newest=final)
    return final


def publish_final(run_dir: Path, model: torch.nn.Module, task) -> None:
    """The final model at ``OUT/config.json`` + ``OUT/model.safetensors`` (+ the task's files).

    Written into a staging directory first; the old manifest goes, each file is renamed into place,
    and the new manifest (of these files only) comes last, so a manifest never vouches for a
    half-replaced set.
    """
    run_dir = Path(run_dir)
    stage = run_dir / f".final-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    write_model_files(stage, model, task)
    write_manifest(stage)
    (run_dir / MANIFEST_FILE).unlink(missing_ok=True)
    for path in sorted(stage.iterdir(), key=lambda p: p.name == MANIFEST_FILE):
        os.replace(path, run_dir / path.name)
    fsync_dir(run_dir)
    stage.rmdir()


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def remove_unfinished(run_dir: Path) -> None:
    """Delete temporary directories left by a write that was killed."""
    for p in Path(run_dir).glob(".final-*"):
        shutil.rmtree(p, ignore_errors=True)
    root = Path(run_dir) / "checkpoints"
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


def step_of(checkpoint: Path) -> int:
    """The step of a checkpoint directory ``.../step-00000100``."""
    m = _STEP_DIR.match(Path(checkpoint).name)
    if m is None:
        raise CheckpointError(f"{str(checkpoint)!r} is not a checkpoint directory (step-NNNNNNNN)")
    return int(m.group(1))


def prune(run_dir: Path, keep_last: int, newest: Path | None = None) -> None:
    """Keep the ``keep_last`` newest checkpoints; ``newest`` (the one just written) is always kept."""
    for old in list_checkpoints(run_dir)[:-keep_last]:
        if newest is None or old.resolve() != Path(newest).resolve():
            shutil.rmtree(old, ignore_errors=True)


def set_aside_after(run_dir: Path, step: int) -> list[Path]:
    """Move the checkpoints after ``step`` (the damaged ones a resume fell back past) into
    ``checkpoints/damaged/``, out of the run's history; returns where they went."""
    moved = []
    for path in list_checkpoints(run_dir):
        if step_of(path) > step:
            target = path.parent / "damaged" / path.name
            n = 1
            while target.exists():
                target, n = path.parent / "damaged" / f"{path.name}.{n}", n + 1
            target.parent.mkdir(exist_ok=True)
            os.replace(path, target)
            moved.append(target)
    return moved


def latest_checkpoint(run_dir: Path, warn=print) -> Path | None:
    """The newest checkpoint that passes its manifest; damaged ones are reported and skipped."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            verify(path, required=(STATE_FILE, "model.safetensors", "config.json"))
            return path
        except CheckpointError as e:
            warn(f"warning: {e}; falling back to the previous checkpoint")
    return None


def load_state(directory: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint, read with ``weights_only=True`` (no arbitrary objects)."""
    path = Path(directory) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint {str(directory)!r} has no {STATE_FILE}") from e
    except Exception as e:  # truncated zip, foreign pickle...: never executed, always refused
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path} is unreadable (corrupted, or not an archlab trainer state: "
                              f"{type(e).__name__}: {first})") from None
