"""The training loop every model and task shares.

One optimiser step of a global batch of ``batch_size`` examples::

    for micro in 1..grad_accum:                      # each process takes 1/N of every micro-batch
        loss = task.step(model, batch) / grad_accum  # under autocast for bf16 / fp16 (DDP wraps the step)
        loss.backward()                              # DDP all-reduces only on the last micro-step
    clip_grad_norm_(max=grad_clip); optimizer.step(); scheduler.step()

Around it: evaluation of the validation split every ``eval_every`` steps (logged as split "val")
and early stopping on it; at the end the validation split, then the test split, once;
checkpoints every ``save_every`` steps (and on SIGINT / SIGTERM) that resume bit-exactly, because
every source of randomness is either saved (RNG states) or a function of ``(seed, position)`` (the
data); progress, ``metrics.jsonl`` and MFU. The final model lands in ``OUT/model.safetensors`` +
``OUT/config.json``, loadable by ``archlab.from_pretrained(OUT)``.
"""

from __future__ import annotations

import contextlib
import math
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model

from archlab.checkpoint import unwrap
from archlab.errors import CheckpointError, check
from archlab.registry import model_info
from archlab.tasks import Task
from archlab.train import checkpointing as ckpt
from archlab.train import distributed
from archlab.train.config import TrainConfig, parse_value
from archlab.train.evaluation import autocast_for, evaluate_model, to_device
from archlab.train.mfu import forward_flops, mfu, peak_flops
from archlab.train.optim import build_optimizer, build_scheduler
from archlab.train.progress import Reporter
from archlab.train.resolve import RunSpec, resolve
from archlab.train.rundir import prepare_out, run_record
from archlab.utils.runtime import resolve_device, seed_everything


def measure_step_seconds(spec: RunSpec, steps: int = 5, warmup: int = 2) -> float:
    """Seconds one optimiser step of ``spec`` takes here: the median of ``steps`` timed one by one
    after ``warmup`` (the median shrugs off a step slowed by other work on the machine).

    Runs the real step -- same task, model, batch size and precision -- in this process and writes
    nothing, so a caller with a time budget can choose ``max_steps`` (and with it the schedule).
    """
    check(steps >= 1 and warmup >= 0, f"steps must be >= 1 and warmup >= 0, got {steps} and {warmup}")
    device = resolve_device(parse_value("device", spec.settings.get("device", "auto"), str))
    seed_everything(parse_value("seed", spec.settings.get("seed", TrainConfig.seed), int))
    r = resolve(spec)
    cfg, model = r.train, r.model.to(device).train()
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    micro_batch = cfg.batch_size // cfg.grad_accum
    world = distributed.World()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        _optimizer_step(TaskStep(model, r.task), r.task, optimizer, scaler, cfg, device, world,
                        slice(0, micro_batch), micro_batch, i * cfg.grad_accum)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


class _Signals:
    """SIGINT / SIGTERM set a flag; the loop writes a checkpoint and exits at the next step."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Stopped(Exception):
    """Raised after a signal's checkpoint is written; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, checkpoint: Path | None):
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint
        super().__init__(f"stopped by signal {signum}; checkpoint {checkpoint}")


# --------------------------------------------------------------------------------------------
# The run


def train(spec: RunSpec) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final evaluation metrics and where things are."""
    if model_info(spec.model).fitted:  # fitted (trees), not stepped: their own path, the same run directory
        from archlab.train import boosting

        return boosting.train(spec)
    world = distributed.world_from_env()
    settings_device = spec.settings.get("device", "auto")
    device = distributed.device_for(world, resolve_device(parse_value("device", settings_device, str)))
    world = distributed.setup(device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        return _train(spec, world, device)
    finally:
        if torch.are_deterministic_algorithms_enabled() != deterministic_before:  # the call imports torch's
            torch.use_deterministic_algorithms(deterministic_before)             # compiler: only when needed
        distributed.teardown()


def _train(spec: RunSpec, world: distributed.World, device: torch.device) -> dict[str, Any]:
    seed = parse_value("seed", spec.settings.get("seed", TrainConfig.seed), int)
    deterministic = parse_value("deterministic", spec.settings.get("deterministic", False), bool)
    seed_everything(seed, deterministic)
    r = resolve(spec, world.size)
    cfg, task = r.train, r.task
    has_val = "val" in task.eval_splits
    check(has_val or not (cfg.eval_every or cfg.early_stop_metric),
          f"eval_every and early stopping evaluate the validation split, and task {task.name!r} on --data "
          f"{task.data!r} has none (is val_fraction 0?)")
    check(cfg.precision != "fp16" or device.type == "cuda",
          f"precision=fp16 needs a CUDA device (it uses a gradient scaler), got device {device.type!r}; use bf16")
    out = Path(spec.out)
    resuming = prepare_out(spec, run_record(spec, r), world)
    if world.is_main:
        for note in r.notes:
            print(f"note: {note}", file=sys.stderr)

    model = r.model.to(device)
    model.train()
    optimizer = build_optimizer(model, cfg)
    total = cfg.max_steps
    if cfg.epochs > 0:
        total = max(1, math.ceil(cfg.epochs * task.num_train_samples / cfg.batch_size))
    scheduler = build_scheduler(optimizer, cfg, total)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None

    step, position = 0, 0
    early = {"best": None, "bad_evals": 0}
    report = Reporter(out, total_steps=total, start_step=0, unit=task.unit, enabled=world.is_main,
                      tensorboard=cfg.tensorboard)
    if resuming:
        found = ckpt.latest_checkpoint(out, warn=report.message)
        if found is None:
            report.message(f"--resume: no usable checkpoint in {str(out)!r} yet: starting from step 0")
            report.truncate_after(0)
        else:
            state = ckpt.load_state(found)
            try:
                load_model(model, str(found / "model.safetensors"), strict=True)
            except (SafetensorError, RuntimeError, OSError) as e:
                raise CheckpointError(f"{found} does not fit model {spec.model!r}: {e}") from e
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            step, position, early = state["step"], state["data_position"], dict(state["early_stop"])
            ckpt.set_rng_state(state["rng"])
            report.truncate_after(step)
            report.message(f"resumed from {found} (step {step})")
            if report.bar is not None:
                report.bar.n = step
    core = model
    if cfg.compile:
        try:
            core = torch.compile(model, backend=cfg.compile_backend)
        except Exception as e:  # e.g. an unknown backend
            report.message(f"warning: torch.compile failed ({type(e).__name__}: {e}); training without it")
    train_model = _wrap_ddp(core, task, world, device)

    micro_batch = cfg.batch_size // cfg.grad_accum          # global examples per micro-step
    shard = world.shard(micro_batch)                         # this process's rows of it
    peak = cfg.peak_flops or peak_flops(device, cfg.precision)
    flops_per_example = 0.0  # counted only where MFU can be reported (a known peak): counting takes a forward
    if peak:
        example = to_device(task.train_batch(0, 1, cfg.seed, slice(0, 1)), device)
        flops_per_example = 3 * forward_flops(model, lambda: task.step(model, example))  # fwd + bwd (2x fwd)

    def save(at_step: int) -> Path | None:
        path = None
        if world.is_main:
            state = {
                "format": 1, "step": at_step, "data_position": position, "total_steps": total,
                "world_size": world.size, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                "rng": ckpt.rng_state(), "early_stop": dict(early),
            }
            path = ckpt.save_checkpoint(out, at_step, model, task, state, cfg.keep_last)
        world.barrier()
        return path

    def evaluate_now(split: str) -> dict[str, float]:
        return evaluate_model(core, task, device, cfg.precision, cfg.eval_batch_size or micro_batch, cfg.eval_batches,
                              world, split)

    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    window_steps, window_start = 0, time.perf_counter()
    guard_compile = cfg.compile and core is not model
    metrics: dict[str, float] = {}
    stopped_early = False
    train_seconds = 0.0  # time in optimiser steps only: evaluation and checkpoints excluded
    with _Signals() as signals:
        while step < total:
            rng_before = ckpt.rng_state() if guard_compile else None
            position_before = position
            step_start = time.perf_counter()
            try:
                step_loss, grad_norm = _optimizer_step(
                    train_model, task, optimizer, scaler, cfg, device, world, shard, micro_batch, position)
            except Exception as e:
                if not guard_compile:
                    raise
                # torch.compile fails lazily, on the first call: redo this step without it.
                report.message(f"warning: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); "
                               "training without it")
                optimizer.zero_grad(set_to_none=True)
                ckpt.set_rng_state(rng_before)
                core, guard_compile = model, False
                train_model = _wrap_ddp(core, task, world, device)
                continue
            guard_compile = False
            position = position_before + cfg.grad_accum
            scheduler.step()
            step += 1
            train_seconds += time.perf_counter() - step_start
            window_steps += 1
            loss_sum += step_loss
            report.advance()

            if step % cfg.log_every == 0 or step == total:
                elapsed = time.perf_counter() - window_start
                mean_loss = world.all_reduce_sum(loss_sum.cpu().view(1)).item() / (window_steps * world.size)
                examples_per_s = window_steps * cfg.batch_size / max(elapsed, 1e-9)
                rate = examples_per_s * task.items_per_sample
                util = mfu(flops_per_example, examples_per_s, world.size, peak)
                eta = (total - step) * elapsed / window_steps
                lr = scheduler.get_last_lr()[0]
                record = {"step": step, "split": "train", "loss": mean_loss, "lr": lr,
                          f"{task.unit}_per_s": rate, "elapsed_s": elapsed}
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                if util is not None:
                    record["mfu"] = util
                report.log(record)
                report.train_line(step, mean_loss, lr, rate, util, eta)
                loss_sum.zero_()
                window_steps, window_start = 0, time.perf_counter()

            if cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                metrics = evaluate_now("val")
                report.log({"step": step, "split": "val", **metrics})
                report.message(f"val @ step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                if _early_stop(cfg, task, metrics, early):
                    report.message(f"early stop at step {step}: {cfg.early_stop_metric} did not improve for "
                                   f"{cfg.early_stop_patience} evaluations")
                    stopped_early = True
                    break
                window_start = time.perf_counter()  # evaluation time is not training throughput

            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                save(step)
                window_start = time.perf_counter()

            if cfg.max_seconds and step < total and world.any(train_seconds >= cfg.max_seconds):
                report.message(f"time cap: {train_seconds:.1f} s of training >= max_seconds={cfg.max_seconds:g} "
                               f"at step {step} of {total}")
                break

            if world.any(signals.received is not None):
                signum = signals.received or signal.SIGTERM
                path = save(step)
                report.message(f"signal {signum}: checkpoint written at step {step}; resume with --resume")
                report.close()
                raise Stopped(signum, path)

    val_metrics = evaluate_now("val") if has_val else {}
    if val_metrics:
        report.log({"step": step, "split": "val", **val_metrics})
    metrics = evaluate_now("test")  # the test split's one look, after every choice is made
    report.log({"step": step, "split": "test", **metrics})
    last = save(step)
    if world.is_main:
        ckpt.publish_final(out, model, task)
    world.barrier()
    report.message(f"done: step {step}; test " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                   + f"; model in {out}")
    report.close()
    return {"step": step, "metrics": metrics, "val_metrics": val_metrics, "out": str(out),
            "checkpoint": str(last) if last else None,
            "early_stopped": stopped_early, "train_seconds": train_seconds}


class TaskStep(torch.nn.Module):
    """The forward half of one training micro-step, ``task.step(model, batch)``, as a module.

    DDP all-reduces gradients only for calls of the forward of the module it wraps; wrapping this
    one (not the model) lets a task call whichever interface method it needs (``token_losses``,
    ``masked_lm_logits`` ...) on the plain model and still have its gradients averaged.
    """

    def __init__(self, model: torch.nn.Module, task: Task):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch) -> torch.Tensor:
        return self.task.step(self.model, batch)


def _wrap_ddp(module, task: Task, world: distributed.World, device: torch.device):
    """The module whose call is one micro-step's loss: ``TaskStep``, under DDP when distributed."""
    step = TaskStep(module, task)
    if not world.distributed:
        return step
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(step, device_ids=ids)


def _optimizer_step(model, task: Task, optimizer, scaler, cfg: TrainConfig, device, world, shard,
                    micro_batch: int, position: int):
    """Forward/backward over ``grad_accum`` micro-batches, then one clipped optimiser step.

    ``model`` is the step module of ``_wrap_ddp``: calling it on a batch gives the loss."""
    step_loss = torch.zeros((), dtype=torch.float64, device=device)
    for micro in range(cfg.grad_accum):
        batch = to_device(task.train_batch(position + micro, micro_batch, cfg.seed, shard), device)
        last = micro == cfg.grad_accum - 1
        # Inner micro-steps only accumulate gradients locally; DDP all-reduces on the last one.
        sync = model.no_sync() if (world.distributed and not last) else contextlib.nullcontext()
        with sync:
            with autocast_for(device, cfg.precision):
                loss = model(batch)
            scaled = loss / cfg.grad_accum
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        step_loss += loss.detach().double() / cfg.grad_accum
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = None
    if cfg.grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(unwrap(model).parameters(), cfg.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss, grad_norm


def _early_stop(cfg: TrainConfig, task: Task, metrics: dict[str, float], early: dict) -> bool:
    if not cfg.early_stop_metric or not cfg.early_stop_patience:
        return False
    name = cfg.early_stop_metric
    check(name in metrics, f"early_stop_metric must be one of the task's metrics {sorted(metrics)}, got {name!r}")
    value = metrics[name]
    better = (lambda a, b: a > b) if task.metric_modes.get(name, "min") == "max" else (lambda a, b: a < b)
    if early["best"] is None or better(value, early["best"]):
        early["best"], early["bad_evals"] = value, 0
        return False
    early["bad_evals"] += 1
    return early["bad_evals"] >= cfg.early_stop_patience
