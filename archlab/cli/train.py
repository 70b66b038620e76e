"""``archlab train``: train any registered model on a task, with checkpoints and exact resume."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from archlab.errors import ConfigError

# Named flags that are keys of the flat settings namespace (flag dest -> key).
FLAG_KEYS = ("max_steps", "epochs", "save_every", "eval_every", "device", "precision", "seed")


DESCRIPTION = """\
Train any registered model on a task, with checkpoints and exact resume.

Settings come, from weakest to strongest, from the trainer's defaults, a --config recipe (YAML or
TOML, the same keys), the named flags below, and --set key=value (any trainer, task or model field
by name). The run writes to --out: checkpoints/, metrics.jsonl, and the final model
(config.json + model.safetensors), which archlab evaluate, generate, forecast and translate read.
Under torchrun --nproc_per_node=N -m archlab train ... it runs DDP.
"""


def _epilog() -> str:
    from archlab.tasks import get_task, list_tasks
    from archlab.train.config import TrainConfig

    c = TrainConfig()
    tasks = "\n".join(f"  {t:<10} {get_task(t).default_data or '(none: give --data)'}" for t in list_tasks())
    return f"""\
each task and the data it trains on without --data (all offline):
{tasks}

trainer settings (--set KEY=VALUE) and their defaults:
  batch_size={c.batch_size} grad_accum={c.grad_accum} optimizer={c.optimizer} lr={c.lr:g} \
weight_decay={c.weight_decay:g} betas={c.betas[0]:g},{c.betas[1]:g}
  schedule={c.schedule} warmup_steps={c.warmup_steps} min_lr_ratio={c.min_lr_ratio:g} grad_clip={c.grad_clip:g} \
momentum={c.momentum:g} (sgd)
  muon_lr={c.muon_lr:g} muon_momentum={c.muon_momentum:g} ns_steps={c.ns_steps} (muon: the hidden matrices; the rest at lr)
  eval_every={c.eval_every} eval_batches={c.eval_batches} save_every={c.save_every} keep_last={c.keep_last} \
log_every={c.log_every} max_seconds={c.max_seconds:g}
  early_stop_metric, early_stop_patience (off), tensorboard=false, peak_flops (looked up)
  select_metric: keep the weights of the best validation evaluation of this metric (default: early_stop_metric's
  when early stopping, else the last weights; "last": the last weights)

a model's own settings (n_layer, hidden, dropout ...): archlab list --settings MODEL
a model's layers, shapes and parameter count:        archlab summary MODEL

examples:
  archlab train --task classify --model mlp --data mnist5k --out runs/mlp --max-steps 500
  archlab train --task lm --model gpt --set n_layer=2 --set block_size=64 --out runs/gpt --save-every 100
  archlab train --task lm --model gpt --set n_layer=2 --set block_size=64 --out runs/gpt --resume --max-steps 2000
  archlab train --config configs/mlp_mnist5k.toml --out runs/mlp5k
"""


HELP = "train a model on a task (checkpoints, resume, bf16, DDP)"  # the line `archlab --help` shows


def register(sub) -> None:
    import argparse

    from archlab.tasks import list_tasks
    from archlab.train.config import TrainConfig

    c = TrainConfig()
    p = sub.add_parser("train", help=HELP,
                       description=DESCRIPTION, epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", help=f"what to train for: {', '.join(list_tasks())} (or task: in --config)")
    p.add_argument("--model", help="a registered model name (archlab list), or model: in --config")
    p.add_argument("--data", help="a data set name or a path (default: the task's own, listed below)")
    p.add_argument("--config", metavar="FILE", help="a YAML or TOML recipe holding the same keys")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a trainer, task or model field (repeatable), e.g. --set n_layer=2")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (checkpoints, metrics, final model)")
    p.add_argument("--max-steps", type=int, metavar="N", help=f"optimiser steps (default {c.max_steps})")
    p.add_argument("--epochs", type=float, metavar="E", help="passes over the training data (replaces --max-steps)")
    p.add_argument("--save-every", type=int, metavar="N",
                   help="checkpoint every N steps (default: only at the end, and on Ctrl-C)")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="evaluate on held-out data every N steps (default: only at the end)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last good checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over in an --out that already holds a run")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"),
                   help="default auto: cuda, then mps, then cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                   help="default fp32; bf16 autocasts (CPU or CUDA); fp16 needs CUDA")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile (falls back to eager)")
    p.add_argument("--seed", type=int, help=f"random seed (default {c.seed})")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: torch's, one per core). Results depend on it: the same seed "
                        "and thread count give the same numbers. On a machine busy with other work, 1 is often "
                        "much faster for small models: threads waiting for a busy core stall every step")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic kernels (needed for bit-exact resume on a GPU)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    from archlab.train import RunSpec, Stopped, load_config_file, parse_set, train

    settings = load_config_file(args.config) if args.config else {}
    task = args.task or settings.pop("task", None)
    model = args.model or settings.pop("model", None)
    data = args.data or settings.pop("data", None)
    settings.pop("task", None), settings.pop("model", None), settings.pop("data", None)
    if not task:
        raise ConfigError("--task is required (or `task:` in --config), got none")
    if not model:
        raise ConfigError("--model is required (or `model:` in --config), got none")
    for flag, value in (("task", task), ("model", model), ("data", data)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"`{flag}:` in --config takes a name, got {value!r}")
    if args.resume and args.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite starts it over; give one, got both")
    for key in FLAG_KEYS:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    for key in ("compile", "deterministic"):
        if getattr(args, key):
            settings[key] = True
    settings.update(parse_set(args.sets))
    spec = RunSpec(task=task, model=model, data=data, out=Path(args.out), settings=settings,
                   resume=args.resume, overwrite=args.overwrite)
    try:
        result = train(spec)
    except Stopped as e:
        print(f"archlab train: {e}", file=sys.stderr)
        return e.exit_code
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, the metrics once, from the main process
        for name, value in result["metrics"].items():
            print(f"{name} {value:.6g}")
    return 0
