"""The training loop every model and task shares.

One optimiser step of a global batch of ``batch_size`` examples::

    for micro in 1..grad_accum:                      # each process takes 1/N of every micro-batch
        loss = task.step(model, batch) / grad_accum  # under autocast for bf16 / fp16 (DDP wraps the step)
        loss.backward()                              # DDP all-reduces only on the last micro-step
    stop unless loss and gradient norm are finite    # before the update: the weights stay finite
    clip_grad_norm_(max=grad_clip); optimizer.step(); scheduler.step()

Around it: evaluation of the validation split every ``eval_every`` steps (logged as split "val"),
early stopping on it, and the choice of the weights to keep (``select_metric``: the best evaluation's,
written to ``OUT/best/``); at the end the validation split, then the test split, once, of the kept weights;
checkpoints every ``save_every`` steps (and on SIGINT / SIGTERM) that resume bit-exactly, because
every source of randomness is either saved (RNG states) or a function of ``(seed, position)`` (the
data); progress, ``metrics.jsonl`` and MFU. The final model lands in ``OUT/model.safetensors`` +
``OUT/config.json``, loadable by ``archlab.from_pretrained(OUT)``.

A run holds an OS lock on its directory for its lifetime (a second run there is refused); a new run
that fails before its first checkpoint removes what it wrote, so a retry needs no ``--overwrite``;
a non-finite loss or gradient stops the run naming the step, and nothing non-finite is ever saved.
``Run`` holds a run's parts and state; each phase (set up, resume, step, log, evaluate, save,
finish) is one of its methods.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model

from archlab.checkpoint import unwrap
from archlab.errors import CheckpointError, ConfigError, TrainingError, check
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
from archlab.train.rundir import RunDirectory, run_record
from archlab.utils.runtime import count_parameters, resolve_device, seed_everything


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


# What a forward pass raises when the model does not fit the task's batches (shapes, dtypes, a
# missing method); a ConfigError (the model's own clear message) passes through as it is.
_MISMATCH = (RuntimeError, TypeError, ValueError, IndexError, AttributeError)


class NonFinite(TrainingError):
    """A non-finite loss or gradient, found before the optimiser applied it."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(what)


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
        run = Run(spec, world, device)
        return run.execute()
    finally:
        if torch.are_deterministic_algorithms_enabled() != deterministic_before:  # the call imports torch's
            torch.use_deterministic_algorithms(deterministic_before)             # compiler: only when needed
        distributed.teardown()


class Run:
    """One training run: its parts (task, model, optimiser, directory, reporter) and the state the
    loop changes (step, data position, early-stopping and selection records, timings)."""

    def __init__(self, spec: RunSpec, world: distributed.World, device: torch.device):
        self.spec, self.world, self.device, self.out = spec, world, device, Path(spec.out)
        seed = parse_value("seed", spec.settings.get("seed", TrainConfig.seed), int)
        check(0 <= seed < 2**63, f"seed must be an integer in [0, 2**63), got {seed}")
        deterministic = parse_value("deterministic", spec.settings.get("deterministic", False), bool)
        seed_everything(seed, deterministic)
        r = resolve(spec, world.size)  # reads the data and builds the model; writes nothing
        self.cfg, self.task, self.model, self.notes = r.train, r.task, r.model, r.notes
        self.record = run_record(spec, r)
        self._check_settings()
        self.directory = RunDirectory(spec, world)
        self.step = self.position = 0
        self.early: dict[str, Any] = {"best": None, "bad_evals": 0}
        # The weights kept so far: their step and value of the selection metric (see TrainConfig.select_metric).
        self.selection: dict[str, Any] = {"metric": self.cfg.selection_metric, "best": None, "step": None}
        self.stopped_early = False
        self.train_seconds = 0.0  # time in optimiser steps only: evaluation and checkpoints excluded
        self.last_saved: Path | None = None
        self.report: Reporter | None = None

    def _check_settings(self) -> None:
        cfg, task = self.cfg, self.task
        self.has_val = "val" in task.eval_splits
        held_out = "val_size" if hasattr(task.config, "val_size") else "val_fraction"  # what sets it to none
        check(self.has_val or not (cfg.eval_every or cfg.early_stop_metric or cfg.selection_metric),
              f"eval_every, early stopping and select_metric evaluate the validation split, and task {task.name!r} "
              f"on --data {task.data!r} has none (is {held_out} 0?)")
        check(cfg.precision != "fp16" or self.device.type == "cuda",
              f"precision=fp16 needs a CUDA device (it uses a gradient scaler), got device {self.device.type!r}; "
              "use bf16")
        if cfg.early_stop_metric:
            check(cfg.early_stop_metric in task.metric_modes,
                  f"early_stop_metric must be one of task {task.name!r}'s metrics ({', '.join(task.metric_modes)}), "
                  f"got {cfg.early_stop_metric!r}")
        if cfg.select_metric not in ("", "last"):
            check(cfg.select_metric in task.metric_modes,
                  f"select_metric must be one of task {task.name!r}'s metrics ({', '.join(task.metric_modes)}) or "
                  f"'last' (the last weights), got {cfg.select_metric!r}")

    # -- the whole run ---------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        """Claim the directory, train, finish; a new run that fails before its first checkpoint
        leaves the directory as it found it."""
        resuming = self.directory.claim(self.record)
        try:
            self.build()
            if resuming:
                self.resume()
            self.prepare_step()
            self.announce()
            self.loop()
            return self.finish()
        except BaseException as e:
            if self.report is not None:
                self.report.close()
            self.directory.abandon(made_progress=self.last_saved is not None or resuming)
            if isinstance(e, NonFinite):
                raise self._diverged(e) from None
            raise
        finally:
            self.directory.release()

    def build(self) -> None:
        cfg, task = self.cfg, self.task
        self.model = self.model.to(self.device)
        self.model.train()
        self.optimizer = build_optimizer(self.model, cfg)
        self.total = cfg.max_steps
        if cfg.epochs > 0:
            self.total = max(1, math.ceil(cfg.epochs * task.num_train_samples / cfg.batch_size))
        self.scheduler = build_scheduler(self.optimizer, cfg, self.total)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        self.micro_batch = cfg.batch_size // cfg.grad_accum     # global examples per micro-step
        self.shard = self.world.shard(self.micro_batch)         # this process's rows of it
        self.report = Reporter(self.out, total_steps=self.total, start_step=0, unit=task.unit,
                               enabled=self.world.is_main, tensorboard=cfg.tensorboard,
                               samples_per_epoch=task.num_train_samples, batch_size=cfg.batch_size)

    def resume(self) -> None:
        """Load the newest checkpoint that passes its manifest; damaged later ones are set aside."""
        report = self.report
        found = ckpt.latest_checkpoint(self.out, warn=report.message if self.world.is_main else (lambda _: None))
        self.world.barrier()  # every process has chosen before the main one moves damaged checkpoints
        if self.world.is_main:
            for path in ckpt.set_aside_after(self.out, -1 if found is None else ckpt.step_of(found)):
                report.message(f"moved the damaged checkpoint aside to {path}")
        self.world.barrier()
        if found is None:
            report.message(f"--resume: no usable checkpoint in {str(self.out)!r} yet: starting from step 0")
            report.truncate_after(0)
            self.resume_selection(None, None)
            return
        state = ckpt.load_state(found)
        try:
            load_model(self.model, str(found / "model.safetensors"), strict=True)
        except (SafetensorError, RuntimeError, OSError) as e:
            raise CheckpointError(f"{found} does not fit model {self.spec.model!r}: {e}") from e
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.position, self.early = state["step"], state["data_position"], dict(state["early_stop"])
        self.resume_selection(state.get("selection"), found)
        ckpt.set_rng_state(state["rng"])
        report.truncate_after(self.step)
        report.message(f"resumed from {found} (step {self.step})")
        report.set_step(self.step)

    def resume_selection(self, saved: dict[str, Any] | None, checkpoint: Path | None) -> None:
        """The selection record of the checkpoint resumed from, and ``OUT/best`` as it was then: weights
        chosen after the checkpoint were lost with the run, and a resume that repeats those steps chooses
        them again. A checkpoint from before selection holds no record: the choice starts here."""
        name = self.selection["metric"]
        if saved and saved.get("metric") == name:
            self.selection = dict(saved)
        elif saved and saved.get("step") is not None:
            self.report.message(f"note: the checkpoint chose weights on val {saved['metric']}, this run on "
                                f"{'val ' + name if name else 'nothing (the last weights)'}: the choice starts over "
                                f"at step {self.step}")
        elif saved is None and checkpoint is not None and name:
            self.report.message(f"note: the checkpoint holds no choice of weights (it predates select_metric): "
                                f"the choice on val {name} starts at step {self.step}")
        if self.selection["step"] is not None and not (checkpoint / ckpt.BEST_FILE).is_file():
            raise CheckpointError(f"{checkpoint} records the weights of step {self.selection['step']} as the chosen "
                                  f"ones but holds no {ckpt.BEST_FILE}")
        if self.world.is_main:
            if self.selection["step"] is None:
                shutil.rmtree(self.out / ckpt.BEST_DIR, ignore_errors=True)
            else:
                ckpt.restore_best(checkpoint, self.out)
        self.world.barrier()

    def prepare_step(self) -> None:
        """torch.compile (optional) and DDP around the model; where MFU can be reported (a known
        peak), one forward pass to count FLOPs. A model that does not fit the task's batches is
        found there, or else on the first step (``_cannot_run``)."""
        cfg, task, model = self.cfg, self.task, self.model
        self.core = model
        if cfg.compile:
            try:
                self.core = torch.compile(model, backend=cfg.compile_backend)
            except Exception as e:  # e.g. an unknown backend
                self.report.message(f"warning: torch.compile failed ({type(e).__name__}: {e}); training without it")
        self.train_model = _wrap_ddp(self.core, self.task, self.world, self.device)
        self.guard_compile = cfg.compile and self.core is not model
        self.first_step = self.step  # the step a mismatch between model and data would fail on
        self.peak = cfg.peak_flops or peak_flops(self.device, cfg.precision)
        self.flops_per_example = 0.0  # counted only where MFU can be reported: counting takes a forward
        if self.peak:
            example = to_device(task.train_batch(0, 1, cfg.seed, slice(0, 1)), self.device)
            try:
                flops = forward_flops(model, lambda: task.step(model, example))
            except ConfigError:
                raise
            except _MISMATCH as e:
                raise self._cannot_run(e) from e
            self.flops_per_example = 3 * flops  # fwd + bwd (2x fwd)

    def _cannot_run(self, e: Exception) -> ConfigError:
        """The error of a model whose forward fails on the task's first batch: one line naming both."""
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return ConfigError(f"--model {self.spec.model!r} cannot run task {self.task.name!r} on --data "
                           f"{self.task.data!r}: {first[:300]}")

    def announce(self) -> None:
        """One summary of the run before its first step."""
        if not self.world.is_main:
            return
        cfg, task = self.cfg, self.task
        for note in self.notes:  # e.g. a setting given under another name
            self.report.message(f"note: {note}")
        sizes = _split_sizes(task, self.micro_batch)
        data = ", ".join(f"{split} {n:,} {task.unit if task.unit == 'tokens' else 'examples'}"
                         for split, n in sizes.items())
        epochs = self.total * cfg.batch_size / max(1, task.num_train_samples)
        threads = f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        world = f" x {self.world.size} processes" if self.world.distributed else ""
        start = f"from step {self.step} " if self.step else ""
        self.report.message(
            f"train {self.spec.model} ({count_parameters(self.model):,} parameters) on task {task.name}, "
            f"data {task.data} ({data}); {self.device}{world}{threads}, {cfg.precision}; "
            f"{start}{self.total:,} steps of {cfg.batch_size} ({epochs:.2f} epochs); writing to {self.out}")

    # -- the loop --------------------------------------------------------------------------------
    def loop(self) -> None:
        cfg, world = self.cfg, self.world
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.window_steps, self.window_start = 0, time.perf_counter()
        with _Signals() as signals:
            while self.step < self.total:
                if not self.take_step():
                    continue  # redone without torch.compile
                if self.step % cfg.log_every == 0 or self.step == self.total:
                    self.log_window()
                if self.step >= self.total:
                    break
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.evaluate_and_maybe_stop():
                    break
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save()
                    self.window_start = time.perf_counter()
                if cfg.max_seconds and world.any(self.train_seconds >= cfg.max_seconds):
                    self.report.message(f"time cap: {self.train_seconds:.1f} s of training >= "
                                        f"max_seconds={cfg.max_seconds:g} at step {self.step} of {self.total}")
                    break
                if world.any(signals.received is not None):
                    signum = signals.received or signal.SIGTERM
                    path = self.save()
                    self.report.message(f"signal {signum}: checkpoint written at step {self.step}; "
                                        "resume with --resume")
                    self.report.close()
                    raise Stopped(signum, path)

    def take_step(self) -> bool:
        """One optimiser step; False when torch.compile failed on it and it must be redone eagerly."""
        rng_before = ckpt.rng_state() if self.guard_compile else None
        start = time.perf_counter()
        try:
            step_loss, self.grad_norm = _optimizer_step(
                self.train_model, self.task, self.optimizer, self.scaler, self.cfg, self.device, self.world,
                self.shard, self.micro_batch, self.position)
        except NonFinite as e:
            raise NonFinite(f"step {self.step + 1}: {e.what}") from None
        except Exception as e:
            if not self.guard_compile:
                if self.step == self.first_step and isinstance(e, _MISMATCH) and not isinstance(e, ConfigError):
                    raise self._cannot_run(e) from e
                raise
            # torch.compile fails lazily, on the first call: redo this step without it.
            self.report.message(f"warning: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); "
                                "training without it")
            self.optimizer.zero_grad(set_to_none=True)
            ckpt.set_rng_state(rng_before)
            self.core, self.guard_compile = self.model, False
            self.train_model = _wrap_ddp(self.core, self.task, self.world, self.device)
            return False
        self.guard_compile = False
        self.position += self.cfg.grad_accum
        self.scheduler.step()
        self.step += 1
        self.train_seconds += time.perf_counter() - start
        self.window_steps += 1
        self.loss_sum += step_loss
        self.report.advance()
        return True

    def log_window(self) -> None:
        """The mean loss, throughput and MFU of the steps since the last log line."""
        cfg, task, world = self.cfg, self.task, self.world
        elapsed = time.perf_counter() - self.window_start
        mean_loss = world.all_reduce_sum(self.loss_sum.cpu().view(1)).item() / (self.window_steps * world.size)
        examples_per_s = self.window_steps * cfg.batch_size / max(elapsed, 1e-9)
        rate = examples_per_s * task.items_per_sample
        util = mfu(self.flops_per_example, examples_per_s, world.size, self.peak)
        eta = (self.total - self.step) * elapsed / self.window_steps
        lr = self.scheduler.get_last_lr()[0]
        record = {"step": self.step, "split": "train", "loss": mean_loss, "lr": lr,
                  f"{task.unit}_per_s": rate, "elapsed_s": elapsed}
        if self.grad_norm is not None:
            record["grad_norm"] = float(self.grad_norm)
        if util is not None:
            record["mfu"] = util
        self.report.log(record)
        self.report.train_line(self.step, mean_loss, lr, rate, util, eta)
        self.loss_sum.zero_()
        self.window_steps, self.window_start = 0, time.perf_counter()

    def evaluate(self, split: str, log: bool = True) -> dict[str, float]:
        """The task's metrics on the held-out ``split`` ("val" or "test"), logged under that name
        unless ``log`` is false."""
        metrics = evaluate_model(self.core, self.task, self.device, self.cfg.precision,
                                 self.cfg.eval_batch_size or self.micro_batch, self.cfg.eval_batches, self.world, split)
        if log:
            self.report.log({"step": self.step, "split": split, **metrics})
        return metrics

    def evaluate_and_maybe_stop(self) -> bool:
        """A periodic evaluation of the validation split; True when early stopping ends the run here."""
        metrics = self.evaluate("val")
        self.report.message(f"val @ step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        self.select(metrics)
        self.window_start = time.perf_counter()  # evaluation time is not training throughput
        if _early_stop(self.cfg, self.task, metrics, self.early):
            self.report.message(f"early stop at step {self.step}: {self.cfg.early_stop_metric} did not improve "
                                f"for {self.cfg.early_stop_patience} evaluations")
            self.stopped_early = True
        return self.stopped_early

    def select(self, metrics: dict[str, float]) -> None:
        """Keep this step's weights (``OUT/best/``, main process) when their validation metrics are the
        best so far on the selection metric; a tie keeps the earlier weights."""
        name = self.selection["metric"]
        if not name:
            return
        check(name in metrics, f"select_metric {name!r} is not among the validation metrics of task "
                               f"{self.task.name!r} at step {self.step} ({', '.join(sorted(metrics))})")
        if not _improves(self.task, name, metrics[name], self.selection["best"]):
            return
        _check_finite_weights(self.model, self.step)
        self.selection.update(best=float(metrics[name]), step=self.step)
        if self.world.is_main:
            ckpt.save_best(self.out, self.model)
        self.world.barrier()

    def save(self) -> Path | None:
        """Checkpoint this step (main process); weights that are not all finite are never written."""
        _check_finite_weights(self.model, self.step)
        path = None
        if self.world.is_main:
            state = {
                "format": 1, "step": self.step, "data_position": self.position, "total_steps": self.total,
                "world_size": self.world.size, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else {},
                "rng": ckpt.rng_state(), "early_stop": dict(self.early), "selection": dict(self.selection),
            }
            best = ckpt.best_path(self.out) if self.selection["step"] is not None else None
            path = ckpt.save_checkpoint(self.out, self.step, self.model, self.task, state, self.cfg.keep_last, best)
        self.world.barrier()
        self.last_saved = path or self.out
        return path

    def finish(self) -> dict[str, Any]:
        """The final evaluations (validation, then the test split's one look, after every choice is
        made), checkpoint and model; the test metrics are for the caller to print.

        The last weights are validated (the end of the validation curve) and are candidates too; the
        checkpoint holds them, to resume from; the kept weights (``select``) are loaded for the final
        validation, the test split and the published model."""
        val_metrics = self.evaluate("val") if self.has_val else {}
        self.select(val_metrics)
        last = self.save()
        kept = self.step if self.selection["step"] is None else self.selection["step"]
        if kept != self.step:
            ckpt.load_best(self.out, self.model)
            val_metrics = self.evaluate("val", log=False)
        if self.selection["metric"]:
            self.report.log({"step": self.step, "split": "selected", "selected_step": kept,
                             "select_metric": self.selection["metric"], **val_metrics})
            self.report.message(self._selected_line())
        metrics = self.evaluate("test")
        if self.world.is_main:
            ckpt.publish_final(self.out, self.model, self.task)
        self.world.barrier()
        self.report.close()
        self.report.message(f"done: step {self.step}, {self.train_seconds:.1f} s of training; model in {self.out}")
        return {"step": self.step, "selected_step": kept, "metrics": metrics,
                "val_metrics": val_metrics, "out": str(self.out), "checkpoint": str(last) if last else None,
                "early_stopped": self.stopped_early, "train_seconds": self.train_seconds}

    def _selected_line(self) -> str:
        name, kept, best = self.selection["metric"], self.selection["step"], self.selection["best"]
        if kept is None:
            return f"no evaluation gave a finite val {name}: kept the last weights (step {self.step})"
        last = " (the last step)" if kept == self.step else f" of {self.step}"
        return f"kept the weights of step {kept}{last}: val {name} {best:.4f}"

    def _diverged(self, e: NonFinite) -> TrainingError:
        saved = [p for p in ckpt.list_checkpoints(self.out)] if self.out.is_dir() else []
        if saved:
            kept = f"the last checkpoint, {saved[-1]}, holds finite weights"
        else:
            kept = f"no checkpoint was written, so {str(self.out)!r} was left as it was"
        return TrainingError(f"{e.what}; training stopped before applying it, and {kept}. A smaller lr "
                             "(or grad_clip, or warmup_steps) usually helps")


# --------------------------------------------------------------------------------------------
# Pieces of a step


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

    ``model`` is the step module of ``_wrap_ddp``: calling it on a batch gives the loss. Raises
    ``NonFinite`` (with the optimiser untouched) when the loss or the gradient norm is not finite
    on any process. Under fp16 the gradient scaler handles overflowing gradients itself (it skips
    the step and lowers the scale), so only the loss is checked there."""
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
    params = [p for p in unwrap(model).parameters() if p.grad is not None]
    if cfg.grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    else:
        grad_norm = _grad_norm(params, device)
    bad_grad = scaler is None and not bool(torch.isfinite(grad_norm))
    if world.any(not bool(torch.isfinite(step_loss)) or bad_grad):
        optimizer.zero_grad(set_to_none=True)
        raise NonFinite(f"the training loss is {step_loss.item():g} and the gradient norm {float(grad_norm):g}")
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss, (grad_norm if cfg.grad_clip > 0 else None)


def _grad_norm(params, device) -> torch.Tensor:
    """The global L2 norm of the gradients (what clipping would measure), without changing them."""
    if not params:
        return torch.zeros((), device=device)
    norms = torch.stack([torch.linalg.vector_norm(p.grad.detach().float()) for p in params])
    return torch.linalg.vector_norm(norms)


def _check_finite_weights(model: torch.nn.Module, step: int) -> None:
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFinite(f"step {step}: the weights are no longer finite ({name} holds NaN or inf)")


def _split_sizes(task: Task, batch_size: int) -> dict[str, int]:
    """Examples (or tokens) of the training split and of each held-out split ("val", "test")."""
    per = task.items_per_sample if task.unit == "tokens" else 1
    sizes = {"train": task.num_train_samples * per}
    for split in task.eval_splits:
        rows = 0
        for batch in task.eval_batches(max(1, batch_size), split):
            first = batch
            while isinstance(first, (tuple, list, dict)) and first:
                first = next(iter(first.values())) if isinstance(first, dict) else first[0]
            rows += int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else 1
        sizes[split] = rows * per
    return sizes


def _improves(task: Task, name: str, value: float, best: float | None) -> bool:
    """Whether ``value`` of metric ``name`` beats ``best`` (None: nothing yet) in the task's direction
    (``metric_modes``); a value that is not finite never does."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if task.metric_modes.get(name, "min") == "max" else value < best


def _early_stop(cfg: TrainConfig, task: Task, metrics: dict[str, float], early: dict) -> bool:
    if not cfg.early_stop_metric or not cfg.early_stop_patience:
        return False
    name = cfg.early_stop_metric
    check(name in metrics, f"early_stop_metric must be one of the task's metrics {sorted(metrics)}, got {name!r}")
    value = metrics[name]
    if _improves(task, name, value, early["best"]):
        early["best"], early["bad_evals"] = value, 0
        return False
    early["bad_evals"] += 1
    return early["bad_evals"] >= cfg.early_stop_patience
