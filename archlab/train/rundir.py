"""The run directory: what makes a directory a run, and preparing it for a new or resumed run.

``OUT/run.json`` records the run's task, model, data and every setting; ``--resume`` checks that
the settings it is given match it (only those in ``RESUMABLE_CHANGES`` may change), and
``--overwrite`` removes a previous run's outputs (``RUN_OUTPUTS``) and nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from archlab.errors import ConfigError, check
from archlab.train import checkpointing as ckpt
from archlab.train import distributed
from archlab.train.progress import METRICS_FILE
from archlab.train.resolve import Resolved, RunSpec
from archlab.utils.io import write_text_atomic

RUN_FILE = "run.json"
# Settings that may change when a run is resumed; every other setting must match the saved run.
RESUMABLE_CHANGES = {"max_steps", "epochs", "max_seconds", "save_every", "eval_every", "eval_batches", "keep_last",
                     "log_every", "device", "compile", "compile_backend", "tensorboard", "peak_flops",
                     "early_stop_metric", "early_stop_patience", "eval_batch_size"}
# What --overwrite removes from an existing run directory (and nothing else).
RUN_OUTPUTS = ("checkpoints", "tensorboard", METRICS_FILE, RUN_FILE, ckpt.MANIFEST_FILE, "config.json",
               "model.safetensors", ckpt.TASK_FILE, "report.html")  # report.html: `archlab report RUN_DIR`


def run_record(spec: RunSpec, r: Resolved) -> dict[str, Any]:
    return {"task": spec.task, "model": spec.model, "data": r.task.data,
            "trainer": dataclasses.asdict(r.train), "task_config": dataclasses.asdict(r.task.config),
            "model_overrides": r.model_overrides}


def _jsonable(x):
    return json.loads(json.dumps(x))


def prepare_out(spec: RunSpec, record: dict[str, Any], world: distributed.World) -> bool:
    """Check (every process) and prepare (main process) the run directory; True when resuming."""
    out = Path(spec.out)
    check(not out.exists() or out.is_dir(), f"--out {str(out)!r} exists and is not a directory")
    has_run = (out / RUN_FILE).is_file()
    # Hidden files (a temporary file of a killed write) do not make a directory a run.
    non_empty = out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir())
    resuming = False
    if spec.resume and has_run:
        saved = json.loads((out / RUN_FILE).read_text())
        now = _jsonable(record)
        diffs = []
        for key in ("task", "model", "data", "task_config", "model_overrides"):
            if saved.get(key) != now.get(key):
                diffs.append(f"{key}: run has {saved.get(key)!r}, given {now.get(key)!r}")
        for key, value in now["trainer"].items():
            if key not in RESUMABLE_CHANGES and saved["trainer"].get(key) != value:
                diffs.append(f"{key}: run has {saved['trainer'].get(key)!r}, given {value!r}")
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
