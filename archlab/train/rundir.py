"""The run directory: what makes a directory a run, and preparing it for a new or resumed run.

``OUT/run.json`` records the run's task, model, data and every setting; ``--resume`` checks that
the settings it is given match it (only those in ``RESUMABLE_CHANGES`` may change), and
``--overwrite`` removes a previous run's outputs (``RUN_OUTPUTS``) and nothing else.

One run per directory: ``RunDirectory.claim`` takes an exclusive OS lock (``flock``) on
``OUT/.lock`` before it changes anything, held until the run ends; the operating system releases
it when the process dies, however it dies. A second ``train``, ``--resume`` or ``--overwrite`` on
a directory that a live run holds is refused. A new run that fails before its first checkpoint
removes what it wrote (``abandon``), so a retry needs no ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from archlab.errors import ConfigError, check
from archlab.train import checkpointing as ckpt
from archlab.train import distributed
from archlab.train.config import TrainConfig
from archlab.train.progress import METRICS_FILE
from archlab.train.resolve import Resolved, RunSpec
from archlab.utils.io import write_text_atomic

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
# Settings that may change when a run is resumed; every other setting must match the saved run.
RESUMABLE_CHANGES = {"max_steps", "epochs", "max_seconds", "save_every", "eval_every", "eval_batches", "keep_last",
                     "log_every", "device", "compile", "compile_backend", "tensorboard", "peak_flops",
                     "early_stop_metric", "early_stop_patience", "eval_batch_size"}
# What --overwrite removes from an existing run directory (and nothing else); report.html: `archlab report RUN_DIR`.
RUN_OUTPUTS = ("checkpoints", "tensorboard", METRICS_FILE, RUN_FILE, ckpt.MANIFEST_FILE, "config.json",
               "model.safetensors", ckpt.TASK_FILE, ckpt.BEST_DIR, "report.html")


def run_record(spec: RunSpec, r: Resolved) -> dict[str, Any]:
    return {"task": spec.task, "model": spec.model, "data": r.task.data,
            "trainer": dataclasses.asdict(r.train), "task_config": dataclasses.asdict(r.task.config),
            "model_overrides": r.model_overrides}


def _jsonable(x):
    return json.loads(json.dumps(x))


def _read_run_file(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--resume: {path} is damaged ({' '.join(str(e).split())}); it records the run's "
                          "settings, so the run cannot be resumed: start over with --overwrite") from None
    check(isinstance(saved, dict) and isinstance(saved.get("trainer"), dict),
          f"--resume: {path} is damaged (expected a JSON object of the run's settings, got "
          f"{type(saved).__name__}); start over with --overwrite")
    return saved


def prepare_out(spec: RunSpec, record: dict[str, Any], world: distributed.World) -> bool:
    """Check (every process) and prepare (main process) the run directory; True when resuming."""
    out = Path(spec.out)
    check(not out.exists() or out.is_dir(), f"--out {str(out)!r} exists and is not a directory")
    has_run = (out / RUN_FILE).is_file()
    # Hidden files (a temporary file of a killed write) do not make a directory a run.
    non_empty = out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir())
    resuming = False
    if spec.resume and has_run:
        saved = _read_run_file(out / RUN_FILE)
        now = _jsonable(record)
        diffs = []
        for key in ("task", "model", "data", "task_config", "model_overrides"):
            if saved.get(key) != now.get(key):
                diffs.append(f"{key}: run has {saved.get(key)!r}, given {now.get(key)!r}")
        # A setting added to the trainer after the run was saved is missing from its run.json: it had the default.
        defaults = _jsonable(dataclasses.asdict(TrainConfig()))
        for key, value in now["trainer"].items():
            had = saved["trainer"].get(key, defaults.get(key))
            if key not in RESUMABLE_CHANGES and had != value:
                diffs.append(f"{key}: run has {had!r}, given {value!r}")
        if diffs:
            raise ConfigError(f"--resume: {str(out)!r} holds a different run; " + "; ".join(diffs))
        resuming = True
    elif spec.resume and non_empty:
        raise ConfigError(f"--resume: {str(out)!r} is not empty and holds no {RUN_FILE}: not an archlab run")
    elif has_run and not spec.overwrite:
        raise ConfigError(f"--out {str(out)!r} already holds a run; pass --resume to continue it or "
                          "--overwrite to start it over")
    elif non_empty and not has_run and not spec.overwrite:
        raise ConfigError(f"--out {str(out)!r} is not empty; choose a new directory or pass --overwrite")
    world.barrier()  # every process has checked the directory before the main one changes it
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not resuming and spec.overwrite:
            final_files = []
            if (out / ckpt.MANIFEST_FILE).is_file():  # the final model's files, tokenizer included
                final_files = list(json.loads((out / ckpt.MANIFEST_FILE).read_text()))
            for name in (*RUN_OUTPUTS, *final_files):
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        ckpt.remove_unfinished(out)
        if not resuming:
            write_text_atomic(out / RUN_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    world.barrier()
    return resuming


class RunDirectory:
    """The directory of one run, claimed (locked and prepared) for this process's lifetime."""

    def __init__(self, spec: RunSpec, world: distributed.World):
        self.spec, self.world, self.out = spec, world, Path(spec.out)
        self.created = False    # this run made the directory itself
        self.prepared = False   # prepare_out ran: RUN_OUTPUTS here are this run's
        self._lock_fd: int | None = None

    def claim(self, record: dict[str, Any]) -> bool:
        """Lock the directory (main process), then check and prepare it; True when resuming."""
        out = self.out
        check(not out.exists() or out.is_dir(), f"--out {str(out)!r} exists and is not a directory")
        failure = None
        if self.world.is_main:
            try:
                self._lock()
            except ConfigError as e:
                failure = e
        if self.world.any(failure is not None):
            raise failure or ConfigError(f"--out {str(out)!r} is in use by another run")
        try:
            resuming = prepare_out(self.spec, record, self.world)
        except BaseException:
            self.abandon(made_progress=False)
            self.release()
            raise
        self.prepared = True
        if self._lock_fd is not None:  # who holds the directory, for the message a second run gets
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        return resuming

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock on this platform: one run per directory is up to the user
            return
        if not self.out.exists():
            try:
                self.out.mkdir(parents=True)
            except OSError as e:
                raise ConfigError(f"--out {str(self.out)!r} cannot be created: {e.strerror}") from None
            self.created = True
        path = self.out / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"--out {str(self.out)!r} is in use by another run (process {holder}); wait for it "
                              "to finish or stop it, or choose another --out") from None
        self._lock_fd = fd

    def abandon(self, made_progress: bool) -> None:
        """After a failure: a new run that wrote no checkpoint removes what it wrote (main process)."""
        if made_progress or not self.world.is_main:
            return
        if self.created:
            shutil.rmtree(self.out, ignore_errors=True)
            return
        if not self.prepared:
            return
        for name in RUN_OUTPUTS:
            p = self.out / name
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
        ckpt.remove_unfinished(self.out)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None
