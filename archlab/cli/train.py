"""``archlab train``: train any registered model on a task, with checkpoints and exact resume.

Settings come, from weakest to strongest, from the trainer's defaults, a ``--config`` recipe
(YAML or TOML, the same keys), the named flags, and ``--set key=value`` (any trainer, task or model
field by name). Under ``torchrun --nproc_per_node=N -m archlab train ...`` it runs DDP.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from archlab.errors import ConfigError

# Named flags that are keys of the flat settings namespace (flag dest -> key).
FLAG_KEYS = ("max_steps", "epochs", "save_every", "eval_every", "device", "precision", "seed")


def register(sub) -> None:
    from archlab.tasks import list_tasks

    p = sub.add_parser("train", help="train a model on a task (checkpoints, resume, bf16, DDP)",
                       description=__doc__)
    p.add_argument("--task", help=f"what to train for: {' | '.join(list_tasks())} (or `task:` in --config)")
    p.add_argument("--model", help="a registered model name (`archlab list`), or `model:` in --config")
    p.add_argument("--data", help="a known data set name or a path (default: the task's own)")
    p.add_argument("--config", metavar="FILE", help="a YAML or TOML recipe holding the same keys")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a trainer, task or model field (repeatable), e.g. --set n_layer=2")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (checkpoints, metrics, final model)")
    p.add_argument("--max-steps", type=int, help="optimiser steps")
    p.add_argument("--epochs", type=float, help="passes over the training data (replaces --max-steps)")
    p.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N steps")
    p.add_argument("--eval-every", type=int, metavar="N", help="evaluate every N steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last good checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over in an --out that already holds a run")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile (falls back to eager)")
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic kernels (needed for bit-exact resume)")
    p.set_defaults(func=run)


def run(args) -> int:
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
