"""Training checkpoints that survive a crash at any moment, and know when they are damaged.

A run directory holds::

    OUT/checkpoints/step-00000100/
        config.json         model name and config (archlab.checkpoint format)
        model.safetensors   weights of the unwrapped, uncompiled module
        trainer_state.pt    optimiser, scheduler, grad scaler, step, data position, RNG states, the
                            early-stopping and selection records --
                            only tensors and plain containers: torch.load(weights_only=True) reads it
        task.json, ...      what the task keeps beside the weights (tokenizer, class names)
        best.safetensors    the weights chosen on the validation split so far (when the run selects)
        manifest.json       size and SHA-256 of every file above, written last
    OUT/best/model.safetensors  those chosen weights, rewritten (atomically) at each improvement

A checkpoint is written into a hidden temporary directory, every file fsynced, and renamed into
place in one step, so a kill mid-write leaves only a temporary directory (removed on the next start)
and the previous checkpoints untouched. ``latest_checkpoint`` checks the manifest of the newest
checkpoint and falls back to the one before it when a file is missing, truncated or altered;
a resumed run sets the damaged ones after it aside (``checkpoints/damaged/``), so that pruning,
which keeps the ``keep_last`` newest, only ever weighs checkpoints of the run's own history.

A checkpoint holds the chosen weights of its moment as ``best.safetensors`` (a hard link to
``OUT/best/model.safetensors`` where the file system allows, else a copy; every rewrite of that
file is a new file renamed into place, so the link keeps its content). A resume puts them back in
``OUT/best``: weights chosen after the checkpoint, by steps that a kill undid, are kept only if the
resumed run chooses them again.
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

from archlab.checkpoint import WEIGHTS_NAME, load_tensors, save_pretrained, save_tensors, unwrap
from archlab.errors import CheckpointError
from archlab.utils.io import atomic_path, fsync_dir, write_text_atomic

STATE_FILE = "trainer_state.pt"
MANIFEST_FILE = "manifest.json"
TASK_FILE = "task.json"
BEST_DIR = "best"                   # OUT/best/model.safetensors: the weights chosen so far
BEST_FILE = "best.safetensors"      # the same weights, as a checkpoint holds them
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
                    keep_last: int, best: Path | None = None) -> Path:
    """Write checkpoint ``step`` atomically, then keep only the newest ``keep_last``; ``best``: the
    chosen weights' file (``best_path``), kept in it as ``best.safetensors``."""
    final = step_dir(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write_model_files(tmp, model, task)
    if best is not None:
        _link_or_copy(best, tmp / BEST_FILE)
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


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # no hard links here (another file system, or none at all)
        shutil.copyfile(source, target)


def best_path(run_dir: Path) -> Path:
    return Path(run_dir) / BEST_DIR / WEIGHTS_NAME


def save_best(run_dir: Path, model: torch.nn.Module) -> None:
    """``OUT/best/model.safetensors``: the weights of ``model`` as the run's chosen ones, written to a
    temporary file and renamed over the previous ones."""
    core = unwrap(model)
    directory = Path(run_dir) / BEST_DIR
    directory.mkdir(exist_ok=True)
    save_tensors(core, directory, core.model_name)


def load_best(run_dir: Path, model: torch.nn.Module) -> None:
    """Load the chosen weights of ``save_best`` into ``model`` (strict)."""
    core = unwrap(model)
    load_tensors(core, Path(run_dir) / BEST_DIR, core.model_name)


def restore_best(checkpoint: Path, run_dir: Path) -> None:
    """Make the chosen weights those a checkpoint holds (``OUT/best`` removed when it holds none)."""
    source = Path(checkpoint) / BEST_FILE
    if not source.is_file():
        shutil.rmtree(Path(run_dir) / BEST_DIR, ignore_errors=True)
        return
    target = best_path(run_dir)
    target.parent.mkdir(exist_ok=True)
    with atomic_path(target) as tmp:
        _link_or_copy(source, tmp)


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
    for p in (Path(run_dir) / BEST_DIR).glob(".*.tmp-*"):
        p.unlink(missing_ok=True)
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
