"""Tabular learning: a row of numeric and categorical columns in, a class or a number out.

Data (``archlab.data.tabular``): ``breast_cancer`` (the default), ``wine``, ``diabetes``, or a CSV
file whose target column is ``target`` (or named target / label / class / y). The rows are split
by ``split_seed`` into train / validation / test (``test_fraction``, ``val_fraction``), or with
``folds=k`` into k folds of which fold ``fold`` is the test part (k-fold cross-validation: one run
per fold). Imputation, scaling and category codes are fitted on the training rows only and saved
beside the checkpoint as ``tabular.json``, so evaluation encodes rows exactly as training did.

A batch is ``(x_num (B, n), x_cat (B, m), y (B,))``. Any ``TabularModel`` (``tabular_mlp``,
``ft_transformer``, ``lightgbm``) is called as ``model(x_num, x_cat)``; the model class says which
of its config fields the table fixes (``tabular_fields``: numeric columns, category counts,
outputs). The problem follows the target (``objective``):

    classification   logits z (B, K); L = -log softmax(z)_y (the log-loss), averaged over the batch
                     accuracy = mean(argmax z == y),  log_loss = mean L
    regression       y^ (B, 1) in standardised units t = (y - mu_y) / sigma_y (training mu, sigma);
                     L = mean (t^ - t)^2;  in the data's units, with e = sigma_y (t^ - t):
                     rmse = sqrt(mean e^2),  mae = mean |e|,
                     r2 = 1 - sum e^2 / sum (y - ybar)^2   (ybar: the mean of the evaluated rows)

Every metric comes from sums over the batches (``sum_keys``), so it is exact for any batch size and
number of processes. A fitted model (gradient-boosted trees, ``fitted = True``) is fitted on the
same arrays (``arrays``) by ``archlab.train.boosting`` and scored by this same ``evaluate_batch``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from archlab.errors import check
from archlab.models.interfaces import TableData, TabularModel
from archlab.tasks.base import Batch, EpochOrder, Task, count_from_sums, register_task
from archlab.utils.io import write_text_atomic

TABULAR_FILE = "tabular.json"
SPLITS = ("train", "val", "test")
CLASSIFICATION_SUMS = ("loss_sum", "correct", "count")
REGRESSION_SUMS = ("loss_sum", "sq_err", "abs_err", "y_sum", "y_sq_sum", "count")


@dataclass
class TabularConfig:
    target: str = ""                  # CSV: the target column ("" = the one named target / label / class / y)
    objective: str = "auto"           # "auto" (from the target) | "classification" | "regression"
    categorical: tuple[str, ...] = () # CSV: columns read as categories even when they hold numbers
    split_seed: int = 0               # the seed of the split (fixed whatever the training seed)
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    folds: int = 0                    # k > 1: k-fold cross-validation, fold `fold` is the test part
    fold: int = 0

    def __post_init__(self):
        check(self.objective in ("auto", "classification", "regression"),
              f"objective must be auto, classification or regression, got {self.objective!r}")
        check(0 < self.test_fraction < 1 and 0 <= self.val_fraction and self.test_fraction + self.val_fraction < 1,
              f"test_fraction must be in (0, 1) with test_fraction + val_fraction < 1, got {self.test_fraction} and "
              f"{self.val_fraction}")
        check(self.folds == 0 or self.folds >= 2, f"folds must be 0 (one fixed split) or >= 2, got {self.folds}")
        check(0 <= self.fold < max(self.folds, 1), f"fold must be in 0..{max(self.folds, 1) - 1} for folds="
                                                    f"{self.folds}, got {self.fold}")


@register_task
class TabularTask(Task):
    name = "tabular"
    Config = TabularConfig
    requires = TabularModel
    default_data = "breast_cancer"
    metric_modes = {"accuracy": "max", "log_loss": "min", "rmse": "min", "mae": "min", "r2": "max", "loss": "min"}

    def __init__(self, config: TabularConfig, data: str | None = None, saved: Path | None = None):
        super().__init__(config, data, saved)
        from archlab.data.tabular import TabularEncoder, load_tabular

        self.table = t = load_tabular(self.data, config.target or None, config.objective, tuple(config.categorical))
        self.split = t.kfold(config.folds, config.fold, config.split_seed, config.val_fraction) if config.folds \
            else t.split(config.split_seed, config.test_fraction, config.val_fraction)
        if saved is not None and (Path(saved) / TABULAR_FILE).is_file():
            meta = json.loads((Path(saved) / TABULAR_FILE).read_text())
            self.encoder = TabularEncoder.from_dict(meta["encoder"])
            self.encoder.check_fits(t)
        else:
            self.encoder = TabularEncoder.fit(t, self.split.train)
        self.classification = t.classification
        self.sum_keys = CLASSIFICATION_SUMS if self.classification else REGRESSION_SUMS
        self._parts = {}
        for part in SPLITS:
            rows = getattr(self.split, part)
            x_num, x_cat = self.encoder.transform(t, rows)
            y = torch.from_numpy(self.encoder.encode_target(t.y[rows]))
            self._parts[part] = (torch.from_numpy(x_num), torch.from_numpy(x_cat), y)
        check(len(self.split.train) >= 2, f"--data {self.data!r}: {len(self.split.train)} training rows")
        self._order = EpochOrder(len(self.split.train))

    # -- what the data fixes -------------------------------------------------------------------
    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        e = self.encoder
        table = TableData(len(e.numeric_features), tuple(e.cardinalities), e.num_outputs, self.classification)
        return model_class.tabular_fields(table, config)

    @property
    def num_train_samples(self) -> int:
        return len(self.split.train)

    def arrays(self, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x_num, x_cat, y)`` of ``part`` ("train" | "val" | "test") as numpy arrays (y encoded)."""
        check(part in SPLITS, f"part must be one of {SPLITS}, got {part!r}")
        return tuple(a.numpy() for a in self._parts[part])

    # -- batches -------------------------------------------------------------------------------
    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        n = len(self.split.train)
        check(batch_size <= n, f"batch_size={batch_size} is larger than the {n} training rows of {self.data!r}")
        idx = self._order.batch(position, batch_size, seed)[shard]
        return tuple(a[idx] for a in self._parts["train"])

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return ("val", "test") if len(self.split.val) else ("test",)

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        self.check_split(split)
        x_num, x_cat, y = self._parts[split]
        for i in range(0, len(y), batch_size):
            yield x_num[i:i + batch_size], x_cat[i:i + batch_size], y[i:i + batch_size]

    # -- loss and metrics ----------------------------------------------------------------------
    def step(self, model, batch):
        x_num, x_cat, y = batch
        out = model(x_num, x_cat).float()  # fp32 loss under autocast
        if self.classification:
            return F.cross_entropy(out, y)  # mean log-loss
        return ((self._regression_value(out) - y) ** 2).mean()  # standardised units

    def evaluate_batch(self, model, batch):
        x_num, x_cat, y = batch
        return self._sums(model(x_num, x_cat).float(), y)

    def _regression_value(self, out: torch.Tensor) -> torch.Tensor:
        check(out.dim() == 2 and out.shape[1] == 1, f"a regression model must return (batch, 1), got {tuple(out.shape)}")
        return out[:, 0]

    def _sums(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ``sum_keys`` of predictions ``out`` (logits (B, K), or (B, 1) standardised values) against ``y``."""
        n = torch.tensor(float(y.numel()))
        if self.classification:
            example_loss = F.cross_entropy(out, y, reduction="none")  # (B,)
            return {"loss_sum": example_loss.sum().double(), "correct": (out.argmax(-1) == y).sum().double(),
                    "count": n}
        t_hat = self._regression_value(out).double()
        sigma, mu = self.encoder.target_std, self.encoder.target_mean
        e = sigma * (t_hat - y.double())          # errors in the data's units
        y_data = mu + sigma * y.double()
        return {"loss_sum": ((t_hat - y.double()) ** 2).sum(), "sq_err": (e ** 2).sum(), "abs_err": e.abs().sum(),
                "y_sum": y_data.sum(), "y_sq_sum": (y_data ** 2).sum(), "count": n}

    def metrics(self, sums):
        n = count_from_sums(sums)
        if self.classification:
            return {"accuracy": sums["correct"] / n, "log_loss": sums["loss_sum"] / n}
        total = sums["y_sq_sum"] - sums["y_sum"] ** 2 / n  # sum (y - ybar)^2
        r2 = 1 - sums["sq_err"] / total if total > 0 else float("nan")
        return {"rmse": math.sqrt(sums["sq_err"] / n), "mae": sums["abs_err"] / n, "r2": r2,
                "loss": sums["loss_sum"] / n}

    def baselines(self) -> dict[str, dict[str, float]]:
        """What a model must beat, on the test rows: ``majority_class`` (classification: always the
        most frequent training class; log-loss of the training class frequencies) or ``mean``
        (regression: always the training mean)."""
        y_train, y = self._parts["train"][2], self._parts["test"][2]
        if self.classification:
            freq = torch.bincount(y_train, minlength=len(self.table.classes)).double()
            freq = freq / freq.sum()
            log_loss = float(-torch.log(freq[y].clamp_min(1e-15)).mean())
            return {"majority_class": {"accuracy": float((y == freq.argmax()).double().mean()), "log_loss": log_loss}}
        sums = self._sums(torch.zeros(len(y), 1), y)  # t^ = 0 in standardised units is the training mean
        return {"mean": self.metrics({k: float(v) for k, v in sums.items()})}

    # -- what travels with a checkpoint --------------------------------------------------------
    def save(self, directory: Path) -> None:
        t = self.table
        meta = {"target": t.target, "objective": t.objective, "classes": t.classes,
                "rows": {part: len(getattr(self.split, part)) for part in SPLITS},
                "numeric_features": self.encoder.numeric_features,
                "categorical_features": self.encoder.categorical_features,
                "encoder": self.encoder.to_dict()}
        write_text_atomic(Path(directory) / TABULAR_FILE, json.dumps(meta, indent=1) + "\n")
