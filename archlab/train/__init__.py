"""One trainer for every model: checkpoints, exact resume, mixed precision, DDP.

    from archlab.train import RunSpec, train, evaluate
    train(RunSpec(task="classify", model="mlp", data="digits", out=Path("runs/mlp"),
                  settings={"max_steps": 200, "lr": 3e-3, "hidden": "64"}))
    evaluate("runs/mlp")            # {"loss": ..., "accuracy": ...}

``settings`` is the flat namespace of trainer (``TrainConfig``), task and model fields that the
command line's ``--config`` and ``--set`` fill. The loop is in ``engine``, settings to parts in
``resolve``, the run directory in ``rundir``, evaluation in ``evaluation``; checkpoints in
``checkpointing``; optimisers and schedules in ``optim``; DDP in ``distributed``; MFU in ``mfu``.
"""

from archlab.train.config import TrainConfig, load_config_file, parse_set, parse_value
from archlab.train.engine import Stopped, measure_step_seconds, train
from archlab.train.evaluation import evaluate, evaluate_model, load_for_evaluation, load_for_generation
from archlab.train.resolve import RunSpec, resolve

__all__ = ["TrainConfig", "RunSpec", "Stopped", "train", "evaluate", "evaluate_model", "load_for_evaluation",
           "load_for_generation", "resolve", "measure_step_seconds", "load_config_file", "parse_set", "parse_value"]
