"""The training loop every model and task shares.

One optimiser step of a global batch of ``batch_size`` examples::

    for micro in 1..grad_accum:                      # each process takes 1/N of every micro-batch
        loss = task.step(model, batch) / grad_accum  # under autocast for bf16 / fp16
        loss.backward()                              # DDP all-reduces only on the last micro-step
    clip_grad_norm_(max=grad_clip); optimizer.step(); scheduler.step()

Around it: evaluation every ``eval_every`` steps with the task's metrics and early stopping;
checkpoints every ``save_every`` steps (and on SIGINT / SIGTERM) that resume bit-exactly, because
every source of randomness is either saved (RNG states) or a function of ``(seed, position)`` (the
data); progress, ``metrics.jsonl`` and MFU. The final model lands in ``OUT/model.safetensors`` +
``OUT/config.json``, loadable by ``archlab.from_pretrained(OUT)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model

from archlab.checkpoint import unwrap
from archlab.errors import CheckpointError, ConfigError, check
from archlab.registry import create_model
from archlab.tasks import Task, get_task
from archlab.train import checkpointing as ckpt
from archlab.train import distributed
from archlab.train.config import TrainConfig, field_types, parse_value, split_keys
from archlab.train.mfu import forward_flops, mfu, peak_flops
from archlab.train.optim import build_optimizer, build_scheduler
from archlab.train.progress import METRICS_FILE, Reporter
from archlab.utils.io import write_text_atomic
from archlab.utils.runtime import resolve_device, seed_everything

RUN_FILE = "run.json"
# Settings that may change when a run is resumed; every other setting must match the saved run.
RESUMABLE_CHANGES = {"max_steps", "epochs", "max_seconds", "save_every", "eval_every", "eval_batches", "keep_last",
                     "log_every", "device", "compile", "compile_backend", "tensorboard", "peak_flops",
                     "early_stop_metric", "early_stop_patience"}
# What --overwrite removes from an existing run directory (and nothing else).
RUN_OUTPUTS = ("checkpoints", "tensorboard", METRICS_FILE, RUN_FILE, ckpt.MANIFEST_FILE, "config.json",
               "model.safetensors", ckpt.TASK_FILE)


@dataclass
class RunSpec:
    """A training run as the command line describes it."""

    task: str
    model: str
    out: Path
    data: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # flat keys: trainer, task and model fields
    resume: bool = False
    overwrite: bool = False


@dataclass
class Resolved:
    train: TrainConfig
    task: Task
    model: torch.nn.Module
    model_overrides: dict[str, Any]


# --------------------------------------------------------------------------------------------
# From settings to a task, a model and a trainer config


def model_config_class(name: str) -> type:
    """The config dataclass of model ``name`` (built on the meta device: no memory, no init cost)."""
    try:
        with torch.device("meta"):
            probe = create_model(name)
    except ConfigError:
        raise
    except Exception:  # a constructor that cannot run on meta: build it for real once
        probe = create_model(name)
    check(dataclasses.is_dataclass(probe.config), f"model {name!r} has no dataclass config to train with")
    return type(probe.config)


def resolve(spec: RunSpec, world_size: int = 1) -> Resolved:
    """Parse ``spec.settings`` into trainer, task and model fields; load the data; build the model."""
    task_cls = get_task(spec.task)
    model_cls = model_config_class(spec.model)
    groups = split_keys(spec.settings, {"trainer": TrainConfig, "task": task_cls.Config, "model": model_cls})
    train_cfg = TrainConfig(**groups["trainer"])
    check(
        train_cfg.batch_size % (train_cfg.grad_accum * world_size) == 0,
        f"batch_size={train_cfg.batch_size} must be divisible by grad_accum={train_cfg.grad_accum} x "
        f"{world_size} process(es) = {train_cfg.grad_accum * world_size}",
    )
    task = task_cls(task_cls.Config(**groups["task"]), spec.data)
    fixed = task.model_fields(field_types(model_cls))
    for key, value in groups["model"].items():
        if key in fixed and fixed[key] != value:
            raise ConfigError(f"{key} is fixed by the data ({key}={fixed[key]}), got {key}={value}")
    model = create_model(spec.model, **{**groups["model"], **fixed})
    task.prepare_model(model)  # before a resume loads the saved weights (and buffers) over it
    return Resolved(train_cfg, task, model, groups["model"])


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
        _optimizer_step(model, r.task, optimizer, scaler, cfg, device, world, slice(0, micro_batch), micro_batch,
                        i * cfg.grad_accum)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


def _run_record(spec: RunSpec, r: Resolved) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------
# Helpers of the loop


def to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def evaluate_model(model, task: Task, device: torch.device, precision: str, batch_size: int,
                   max_batches: int = 0, world: distributed.World | None = None) -> dict[str, float]:
    """The task's metrics on its evaluation split; batches are shared out among the processes."""
    world = world or distributed.World()
    was_training = model.training
    model.eval()
    totals = torch.zeros(len(task.sum_keys), dtype=torch.float64)
    with torch.no_grad():
        for i, batch in enumerate(task.eval_batches(batch_size)):
            if max_batches and i >= max_batches:
                break
            if i % world.size != world.rank:
                continue
            with autocast_for(device, precision):
                _, sums = task.step(model, to_device(batch, device))
            totals += torch.stack([torch.as_tensor(sums[k]).detach().double().cpu() for k in task.sum_keys])
    model.train(was_training)
    totals = world.all_reduce_sum(totals)
    return task.metrics(dict(zip(task.sum_keys, totals.tolist())))


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
    from archlab.train import boosting

    if boosting.is_boosting(spec.model):  # trees are fitted, not stepped: their own path, same run directory
        return boosting.train(spec)
    world = distributed.world_from_env()
    settings_device = spec.settings.get("device", "auto")
    device = distributed.device_for(world, resolve_device(parse_value("device", settings_device, str)))
    world = distributed.setup(device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        return _train(spec, world, device)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        distributed.teardown()


def _train(spec: RunSpec, world: distributed.World, device: torch.device) -> dict[str, Any]:
    seed = parse_value("seed", spec.settings.get("seed", TrainConfig.seed), int)
    deterministic = parse_value("deterministic", spec.settings.get("deterministic", False), bool)
    seed_everything(seed, deterministic)
    r = resolve(spec, world.size)
    cfg, task = r.train, r.task
    check(cfg.precision != "fp16" or device.type == "cuda",
          f"precision=fp16 needs a CUDA device (it uses a gradient scaler), got device {device.type!r}; use bf16")
    out = Path(spec.out)
    resuming = prepare_out(spec, _run_record(spec, r), world)

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
    train_model = _wrap_ddp(core, world, device)

    micro_batch = cfg.batch_size // cfg.grad_accum          # global examples per micro-step
    shard = world.shard(micro_batch)                         # this process's rows of it
    example = to_device(task.train_batch(0, 1, cfg.seed, slice(0, 1)), device)
    flops_per_example = 3 * forward_flops(model, lambda: task.step(model, example))  # fwd + bwd (2x fwd)
    peak = cfg.peak_flops or peak_flops(device, cfg.precision)

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

    def evaluate_now() -> dict[str, float]:
        return evaluate_model(core, task, device, cfg.precision, micro_batch, cfg.eval_batches, world)

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
                train_model = _wrap_ddp(core, world, device)
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
                metrics = evaluate_now()
                report.log({"step": step, "split": "eval", **metrics})
                report.message(f"eval @ step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
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

    metrics = evaluate_now()
    report.log({"step": step, "split": "eval", **metrics})
    last = save(step)
    if world.is_main:
        ckpt.publish_final(out, model, task)
    world.barrier()
    report.message(f"done: step {step}; " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                   + f"; model in {out}")
    report.close()
    return {"step": step, "metrics": metrics, "out": str(out), "checkpoint": str(last) if last else None,
            "early_stopped": stopped_early, "train_seconds": train_seconds}


def _wrap_ddp(module, world: distributed.World, device: torch.device):
    if not world.distributed:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def _optimizer_step(model, task: Task, optimizer, scaler, cfg: TrainConfig, device, world, shard,
                    micro_batch: int, position: int):
    """Forward/backward over ``grad_accum`` micro-batches, then one clipped optimiser step."""
    step_loss = torch.zeros((), dtype=torch.float64, device=device)
    for micro in range(cfg.grad_accum):
        batch = to_device(task.train_batch(position + micro, micro_batch, cfg.seed, shard), device)
        last = micro == cfg.grad_accum - 1
        # Inner micro-steps only accumulate gradients locally; DDP all-reduces on the last one.
        sync = model.no_sync() if (world.distributed and not last) else contextlib.nullcontext()
        with sync:
            with autocast_for(device, cfg.precision):
                loss, _ = task.step(model, batch)
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


# --------------------------------------------------------------------------------------------
# Evaluating a saved model


def read_task_description(checkpoint: str | Path, use: str = "evaluate") -> dict[str, Any]:
    """The ``task.json`` of a run or checkpoint directory, after checking its files' manifest."""
    path = Path(checkpoint)
    check(path.is_dir(), f"--checkpoint {str(path)!r} is not a directory")
    if (path / ckpt.MANIFEST_FILE).is_file():
        ckpt.verify(path)
    task_file = path / ckpt.TASK_FILE
    if not task_file.is_file() and (path / RUN_FILE).is_file():
        steps = [p.name for p in ckpt.list_checkpoints(path)]
        raise CheckpointError(f"run {str(path)!r} has no final model yet; {use} one of its checkpoints "
                              f"({', '.join(str(path / 'checkpoints' / s) for s in steps) or 'none written yet'})")
    if not task_file.is_file():
        raise CheckpointError(f"{str(path)!r} has no {ckpt.TASK_FILE}: it was not written by `archlab train`")
    return json.loads(task_file.read_text())


def load_for_evaluation(checkpoint: str | Path, data: str | None = None,
                        task_settings: dict[str, Any] | None = None) -> tuple[torch.nn.Module, Task]:
    """The model and task of a run directory or checkpoint directory, ready to evaluate.

    ``task_settings`` override fields of the saved task config (e.g. the ``value_column`` of
    another CSV file given as ``data``)."""
    from archlab.checkpoint import from_pretrained

    path = Path(checkpoint)
    described = read_task_description(path)
    task_cls = get_task(described["task"])
    settings = {**described.get("config", {}), **(task_settings or {})}
    config = task_cls.Config(**split_keys(settings, {"task": task_cls.Config})["task"])
    task = task_cls(config, data or described.get("data"), saved=path)
    model = from_pretrained(path)
    fixed = task.model_fields(field_types(type(model.config)))
    for key, value in fixed.items():
        have = getattr(model.config, key, value)
        check(have == value, f"--data {task.data!r} gives {key}={value}, the checkpoint's model has {key}={have}")
    return model, task


def load_for_generation(checkpoint: str | Path):
    """The language model of an ``lm`` run or checkpoint directory and its tokenizer, in eval mode.

    Needs no data: the tokenizer is the ``tokenizer.json`` saved beside the weights.
    """
    from archlab.checkpoint import from_pretrained
    from archlab.data import load_tokenizer

    described = read_task_description(checkpoint, use="generate from")
    check(described.get("task") == "lm",
          f"--checkpoint {str(checkpoint)!r} holds a model of task {described.get('task')!r}; generating text "
          "needs a language model (task 'lm')")
    model = from_pretrained(checkpoint)
    check(hasattr(model, "generate"), f"the model in {str(checkpoint)!r} ({type(model).__name__}) cannot generate")
    return model.eval(), load_tokenizer(checkpoint)


def evaluate(checkpoint: str | Path, data: str | None = None, *, batch_size: int = 64, device: str = "auto",
             precision: str = "fp32") -> dict[str, float]:
    """The task's metrics of a saved model on the evaluation split of its (or another) data set."""
    model, task = load_for_evaluation(checkpoint, data)
    dev = resolve_device(device)
    return evaluate_model(model.to(dev), task, dev, precision, batch_size)
