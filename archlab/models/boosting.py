"""Gradient-boosted decision trees (Friedman 2001), fitted by LightGBM (Ke et al. 2017).

The model is a sum of T regression trees, each fitted to the gradient of the loss left by the ones
before it (functional gradient descent with step size eta = ``learning_rate``)::

    F_0(x) = 0
    g_i    = dL(y_i, F)/dF at F = F_{t-1}(x_i)        (and the Hessian h_i, LightGBM's second-order step)
    f_t    = the tree with at most ``num_leaves`` leaves that best fits -g_i / h_i
    F_t(x) = F_{t-1}(x) + eta * f_t(x)                t = 1..T

    regression    y^ = F_T(x), L = (y - F)^2
    two classes   p(class 1) = sigmoid(F_T(x));  logits [0, F_T(x)]
    K classes     one tree per class and round:  p = softmax(F_T^1(x), ..., F_T^K(x))

A tree splits one column at a threshold (or a set of categories) at a time, so it needs no scaling,
no notion of distance between columns, and no gradient through the splits: it is *fitted*, not
trained by steps of an optimiser (``archlab.train.boosting`` is its fit path), and it says so:
``fitted = True`` on its ``TabularModel`` interface. It is an ``nn.Module`` with no parameters
only so that evaluation code treats every model alike: ``forward(x_num, x_cat)`` returns the same
logits (or regression value) as the networks of ``archlab.models.tabular``, and
``num_parameters()`` counts its split thresholds and leaf values. Its state is LightGBM's own text format, ``model.txt`` beside
``config.json`` -- never a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import CheckpointError, check
from archlab.models.interfaces import TableData, TabularModel
from archlab.registry import build_config, register_model
from archlab.utils.io import write_text_atomic

TREES_FILE = "model.txt"
SMALL_TABLE = 20_000  # training rows below which one thread fits fastest (measured: 0.8 s vs 17 s for 2 threads
                      # on 400 rows of breast_cancer, 200 rounds, on a busy 2-core machine)


@dataclass
class LightGBMConfig:
    num_numeric: int = 8                      # numeric features (the same x_num the networks read)
    cat_cardinalities: tuple[int, ...] = ()   # categorical columns, split on sets of codes
    num_outputs: int = 2                      # classes, or 1 for regression
    num_rounds: int = 1000                    # T: boosting rounds at most (``--max-steps`` sets it)
    learning_rate: float = 0.05               # eta: shrinkage of every tree
    num_leaves: int = 31                      # leaves per tree
    max_depth: int = -1                       # -1: no limit beyond num_leaves
    min_child_samples: int = 20               # fewest training rows in a leaf
    feature_fraction: float = 1.0             # share of columns each tree may use
    bagging_fraction: float = 1.0             # share of rows each tree sees (with bagging_freq > 0)
    bagging_freq: int = 0
    lambda_l2: float = 0.0                    # L2 penalty on leaf values
    cat_smooth: float = 10.0                  # categorical splits: pull each category's mean towards the prior
    early_stopping_rounds: int = 50           # stop when the validation loss has not improved for this many
                                              # rounds, keeping the best round; 0 = off
    num_threads: int = 0                      # 0: one thread below SMALL_TABLE training rows (threads that wait for
                                              # each other cost more than they save there), else every core

    def __post_init__(self):
        check(self.num_numeric >= 0, f"num_numeric must be >= 0, got {self.num_numeric}")
        check(self.num_numeric + len(self.cat_cardinalities) > 0, "a table needs at least one feature column")
        check(self.num_outputs >= 1, f"num_outputs must be >= 1 (classes, or 1 for regression), got {self.num_outputs}")
        for name in ("num_rounds", "num_leaves"):
            check(getattr(self, name) >= 1 + (name == "num_leaves"), f"{name} must be >= "
                  f"{1 + (name == 'num_leaves')}, got {getattr(self, name)}")
        check(self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}")
        check(self.min_child_samples >= 1, f"min_child_samples must be >= 1, got {self.min_child_samples}")
        for name in ("feature_fraction", "bagging_fraction"):
            check(0 < getattr(self, name) <= 1, f"{name} must be in (0, 1], got {getattr(self, name)}")
        check(self.bagging_freq >= 0 and self.lambda_l2 >= 0 and self.cat_smooth >= 0 and self.early_stopping_rounds >= 0
              and self.num_threads >= 0,
              "bagging_freq, lambda_l2, cat_smooth, early_stopping_rounds and num_threads must be >= 0, got "
              f"{self.bagging_freq}, {self.lambda_l2}, {self.cat_smooth}, {self.early_stopping_rounds}, {self.num_threads}")

    @property
    def objective(self) -> str:
        return "regression" if self.num_outputs == 1 else "binary" if self.num_outputs == 2 else "multiclass"

    @property
    def loss_name(self) -> str:
        """LightGBM's name of the loss it reports: mean squared error or log-loss."""
        return {"regression": "l2", "binary": "binary_logloss", "multiclass": "multi_logloss"}[self.objective]


class GradientBoostedTrees(TabularModel, PretrainedMixin, nn.Module):
    config_class = LightGBMConfig
    fitted = True  # LightGBM adds trees; no gradient step, no torch parameter

    @classmethod
    def tabular_fields(cls, data: TableData, config: LightGBMConfig) -> dict[str, Any]:
        # The objective follows num_outputs (1: regression, 2: binary, more: multiclass).
        check(data.classification == (data.num_outputs > 1),
              f"a {'classification' if data.classification else 'regression'} table with {data.num_outputs} "
              f"output(s): lightgbm reads num_outputs=1 as regression and >= 2 as classes")
        return super().tabular_fields(data, config)

    def __init__(self, config: LightGBMConfig):
        super().__init__()
        self.config = config
        self.booster = None          # a lightgbm.Booster once fitted or loaded
        self.best_round = 0          # rounds kept (the best validation round with early stopping)

    # -- fitting -------------------------------------------------------------------------------
    def params(self, seed: int = 0, rows: int = 0) -> dict[str, Any]:
        """LightGBM's parameters for this config and ``rows`` training rows; deterministic for a given seed."""
        c = self.config
        params = {"objective": c.objective, "metric": c.loss_name, "learning_rate": c.learning_rate,
                  "num_leaves": c.num_leaves, "max_depth": c.max_depth, "min_child_samples": c.min_child_samples,
                  "feature_fraction": c.feature_fraction, "bagging_fraction": c.bagging_fraction,
                  "bagging_freq": c.bagging_freq, "lambda_l2": c.lambda_l2, "cat_smooth": c.cat_smooth,
                  # a group of categories needs as many rows as a leaf (LightGBM's default, 100, would
                  # rule out every categorical split on a small table)
                  "min_data_per_group": c.min_child_samples, "seed": seed, "deterministic": True,
                  "force_row_wise": True, "verbosity": -1}
        if c.objective == "multiclass":
            params["num_class"] = c.num_outputs
        if c.num_threads or rows < SMALL_TABLE:
            params["num_threads"] = c.num_threads or 1
        return params

    def _matrix(self, x_num, x_cat) -> np.ndarray:
        """The (N, n + m) float64 matrix LightGBM reads: numeric features, then category codes."""
        x_num, x_cat = (x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x) for x in (x_num, x_cat))
        c = self.config
        check(x_num.ndim == 2 and x_num.shape[1] == c.num_numeric and x_cat.ndim == 2
              and x_cat.shape[1] == len(c.cat_cardinalities) and len(x_num) == len(x_cat),
              f"lightgbm expects x_num (batch, {c.num_numeric}) and x_cat (batch, {len(c.cat_cardinalities)}), "
              f"got {x_num.shape} and {x_cat.shape}")
        return np.concatenate([x_num.astype(np.float64), x_cat.astype(np.float64)], axis=1)

    def fit(self, train: tuple, valid: tuple | None = None, *, seed: int = 0,
            on_round: Callable[[int, dict[str, float]], bool | None] | None = None) -> dict[str, list[float]]:
        """Fit on ``train = (x_num, x_cat, y)`` (y: class codes, or standardised values); with
        ``valid`` rows, early stopping keeps the round of lowest validation loss. ``on_round(t,
        losses)`` is called after every round with {"train": ..., "valid": ...}; returning True stops
        the fit there (a time cap). Returns the losses of every round."""
        import lightgbm as lgb

        c = self.config
        n_num = c.num_numeric
        categorical = list(range(n_num, n_num + len(c.cat_cardinalities)))
        x, y = self._matrix(train[0], train[1]), np.asarray(train[2])
        check(len(x) >= 2, f"lightgbm needs at least 2 training rows, got {len(x)}")
        data = lgb.Dataset(x, label=y, categorical_feature=categorical or "auto", free_raw_data=False)
        sets, names = [data], ["train"]
        if valid is not None and len(valid[2]):
            sets.append(lgb.Dataset(self._matrix(valid[0], valid[1]), label=np.asarray(valid[2]), reference=data,
                                    categorical_feature=categorical or "auto"))
            names.append("valid")
        history: dict[str, dict[str, list[float]]] = {}
        callbacks = [lgb.record_evaluation(history)]
        if on_round is not None:
            def report(env):
                losses = {name: float(value) for name, _, value, _ in env.evaluation_result_list}
                if on_round(env.iteration + 1, losses) is True:
                    raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)
            callbacks.append(report)
        stop = c.early_stopping_rounds if len(sets) > 1 else 0
        if stop:
            callbacks.append(lgb.early_stopping(stop, first_metric_only=True, verbose=False))
        booster = lgb.train(self.params(seed, len(x)), data, num_boost_round=c.num_rounds, valid_sets=sets,
                            valid_names=names, callbacks=callbacks)
        losses = {name: list(values[c.loss_name]) for name, values in history.items()}
        # The round kept: the first of lowest validation loss with early stopping (what LightGBM's
        # early stopping keeps, also when a time cap ended the fit first), else the last one.
        rounds = booster.current_iteration()
        self.best_round = int(np.argmin(losses["valid"][:rounds])) + 1 if stop else rounds
        # Keep exactly the trees used: the text model then predicts without a round number.
        self.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=self.best_round))
        return losses

    # -- predicting ----------------------------------------------------------------------------
    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) for K >= 2 classes (softmax of them = the trees' probabilities), or (B, 1)."""
        check(self.booster is not None, "this lightgbm model is not fitted: train it (archlab train --model lightgbm) "
                                        "or load one (archlab.from_pretrained)")
        x = self._matrix(x_num, x_cat)
        threads = self.config.num_threads or (1 if len(x) < SMALL_TABLE else 0)
        raw = np.asarray(self.booster.predict(x, raw_score=True, num_threads=threads), dtype=np.float64)
        dtype = x_num.dtype if x_num.is_floating_point() else torch.float32
        raw = torch.as_tensor(raw, dtype=dtype, device=x_num.device)
        if self.config.objective == "binary":
            return torch.stack([torch.zeros_like(raw), raw], dim=1)  # softmax([0, F]) = [1 - p, p], p = sigmoid(F)
        return raw.reshape(len(raw), -1)  # (B, K) raw class scores, or (B, 1)

    def num_parameters(self) -> int:
        """The numbers the trees hold: one threshold per split and one value per leaf."""
        if self.booster is None:
            return 0
        trees = self.booster.dump_model()["tree_info"]
        return sum(2 * t["num_leaves"] - 1 for t in trees)

    # -- its own file format (used by archlab.checkpoint) ---------------------------------------
    def save_weights(self, directory: str | Path) -> None:
        """Write the trees in LightGBM's text format as ``model.txt``."""
        check(self.booster is not None, "cannot save an unfitted lightgbm model")
        write_text_atomic(Path(directory) / TREES_FILE, self.booster.model_to_string())

    def load_weights(self, directory: str | Path) -> None:
        import lightgbm as lgb

        path = Path(directory) / TREES_FILE
        if not path.is_file():
            raise CheckpointError(f"{str(directory)!r} has no {TREES_FILE} (the trees of a lightgbm model)")
        try:
            self.booster = lgb.Booster(model_str=path.read_text())
        except (lgb.basic.LightGBMError, ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is not a LightGBM model (truncated or corrupted?): {e}") from e
        self.best_round = self.booster.current_iteration()
        want = self.config.num_outputs if self.config.objective == "multiclass" else 1
        if self.booster.num_model_per_iteration() != want:
            raise CheckpointError(f"{path} has {self.booster.num_model_per_iteration()} tree(s) per round, the config "
                                  f"says {want} (num_outputs={self.config.num_outputs})")


@register_model("lightgbm", family="boosting",
                description="Gradient-boosted decision trees fitted by LightGBM (tables; saved as LightGBM text)")
def lightgbm(**config) -> GradientBoostedTrees:
    return GradientBoostedTrees(build_config(LightGBMConfig, {}, config))
