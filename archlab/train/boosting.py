"""The fit path of gradient-boosted trees: a run directory like every other run, without an optimiser.

Trees are not trained by gradient steps through torch (``archlab.models.boosting``): LightGBM adds
one tree per round. ``train(spec)`` does what the trainer does around its loop, for them:

    OUT/run.json          the run as given (task, model, data, settings), checked by --overwrite
    OUT/metrics.jsonl     every ``log_every`` rounds: {"step": round, "split": "train", "loss",
                          "val_loss"}; at the end the task's metrics {"split": "val" | "test", ...}
    OUT/config.json       {"archlab_model": "lightgbm", "config": {...}} (the archlab checkpoint format)
    OUT/model.txt         the trees, in LightGBM's own text format (never a pickle)
    OUT/task.json, ...    the task's files (tabular.json: the encoder fitted on the training rows)
    OUT/manifest.json     size and SHA-256 of each file, written last

so ``archlab evaluate --checkpoint OUT`` and ``archlab.from_pretrained(OUT)`` read it like any
other run. A step is a boosting round: ``--max-steps N`` sets ``num_rounds``; ``max_seconds``
caps the fit's time. Early stopping watches the validation rows (never the test rows) and keeps
the best round. The fit runs on the CPU whatever ``device`` says. Trainer settings that
only mean something to an optimiser (``lr``, ``batch_size``, ...) are refused with the list of
those that apply. ``archlab.train.engine.train`` hands a run here when the model's class declares
``fitted = True`` (``archlab.models.interfaces.Capability``; the registry's ``ModelEntry.fitted``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from archlab.errors import ConfigError, check
from archlab.registry import model_info

# The trainer's keys that mean something to a fit (a step = a boosting round); the rest are refused.
# Early stopping and select_metric are refused too: the fit stops and keeps its best round on the
# validation rows' loss itself (the model's early_stopping_rounds), whatever metric they would name.
TRAINER_KEYS = {"seed", "max_steps", "device", "log_every", "deterministic", "keep_last", "save_every", "eval_every",
                "max_seconds"}
KEEPS_BEST_ROUND = {"select_metric", "early_stop_metric", "early_stop_patience"}


def train(spec) -> dict[str, Any]:
    """Fit the model of ``spec`` (an ``archlab.train.RunSpec``; its class declares ``fitted = True``)
    and write its run directory."""
    import torch

    from archlab.tasks import get_task
    from archlab.tasks.tabular import TabularTask
    from archlab.train import checkpointing as ckpt
    from archlab.train.config import TrainConfig, route_settings
    from archlab.train.distributed import World
    from archlab.train.evaluation import evaluate_model
    from archlab.train.progress import Reporter
    from archlab.train.resolve import check_trainable, resolve
    from archlab.train.rundir import RunDirectory, run_record
    from archlab.utils.runtime import seed_everything

    entry = model_info(spec.model)
    check(entry.fitted, f"{spec.model} is trained by gradient steps (archlab.train.train), not fitted")
    check_trainable(spec.model, spec.task)
    check(not spec.resume, f"--resume: {spec.model} fits in one go and has no checkpoints to resume; start over with "
                           "--overwrite")
    task_cls = get_task(spec.task)
    groups = route_settings(spec.settings, {"trainer": TrainConfig, "task": task_cls.Config,
                                            "model": entry.config_class}).groups
    settings = dict(spec.settings)
    if "max_steps" in groups["trainer"] and "num_rounds" not in groups["model"]:
        settings["model.num_rounds"] = groups["trainer"]["max_steps"]  # a step is a boosting round
    seed_everything(TrainConfig(**groups["trainer"]).seed)
    r = resolve(dataclasses.replace(spec, settings=settings))
    cfg, task, model = r.train, r.task, r.model  # device: whatever is asked, LightGBM fits on the CPU
    check(isinstance(task, TabularTask), f"{spec.model} fits tables: use --task tabular, got --task {spec.task}")
    refused = sorted(set(groups["trainer"]) - TRAINER_KEYS)
    if refused:
        fixed = task.model_fields(entry.model_class, model.config)
        valid = ", ".join(sorted(f.name for f in dataclasses.fields(model.config) if f.name not in fixed))
        best_round = ("; the fit keeps its best round on the validation rows' loss itself (early_stopping_rounds)"
                      if KEEPS_BEST_ROUND & set(refused) else "")
        raise ConfigError(f"{', '.join(refused)} {'does' if len(refused) == 1 else 'do'} not apply to {spec.model} "
                          f"(trees are fitted, not trained by an optimiser){best_round}; its settings are seed, "
                          f"max_steps (= num_rounds) and {valid}")

    out = Path(spec.out)
    world = World()
    record = {**run_record(spec, r), "fit": "boosting"}
    directory = RunDirectory(spec, world)  # the trainer's lock; a fit that fails leaves nothing behind
    directory.claim(record)
    report = None
    try:
        report = Reporter(out, total_steps=model.config.num_rounds, start_step=0, unit="samples", enabled=True)
        lr = model.config.learning_rate
        start = last = time.perf_counter()

        loss_name = model.config.loss_name

        def on_round(t: int, losses: dict[str, float]) -> None:
            nonlocal last
            report.advance()
            if t % cfg.log_every == 0 or t == model.config.num_rounds:
                now = time.perf_counter()
                rec = {"step": t, "split": "train", "loss": losses["train"], "lr": lr, "elapsed_s": now - last}
                shown = {"loss": f"{losses['train']:.4f}"}
                if "valid" in losses:
                    rec["val_loss"] = shown["val_loss"] = losses["valid"]
                    shown["val_loss"] = f"{losses['valid']:.4f}"
                report.log(rec)
                if report.bar is not None:
                    report.bar.set_postfix(shown, refresh=False)
                else:
                    report.message(f"round {t}/{model.config.num_rounds} | train {loss_name} {losses['train']:.4f}"
                                   + (f" | validation {losses['valid']:.4f}" if "valid" in losses else ""))
                last = now
            return bool(cfg.max_seconds) and time.perf_counter() - start >= cfg.max_seconds  # a time cap stops the fit

        train_part, val_part = task.arrays("train"), task.arrays("val")
        model.fit(train_part, val_part if len(val_part[2]) else None, seed=cfg.seed, on_round=on_round)
        train_seconds = time.perf_counter() - start
        val_metrics = evaluate_model(model, task, torch.device("cpu"), "fp32", 1024, split="val") \
            if "val" in task.eval_splits else {}
        if val_metrics:
            report.log({"step": model.best_round, "split": "val", **val_metrics})
        metrics = evaluate_model(model, task, torch.device("cpu"), "fp32", 1024)  # the test rows' one look
        report.log({"step": model.best_round, "split": "test", **metrics})
        ckpt.publish_final(out, model, task)
        stopped = model.best_round < model.config.num_rounds
        report.message(f"done: {model.best_round} rounds{' (early stop on the validation rows)' if stopped else ''}, "
                       f"{train_seconds:.1f} s of fitting; model in {out}")  # the metrics: printed by the caller
        report.close()
        return {"step": model.best_round, "metrics": metrics, "val_metrics": val_metrics, "out": str(out),
                "checkpoint": None, "early_stopped": stopped, "train_seconds": train_seconds}
    except BaseException:
        if report is not None:
            report.close()
        directory.abandon(made_progress=False)
        raise
    finally:
        directory.release()
