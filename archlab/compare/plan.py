"""The bake-off as data: which data sets are the rows, which architectures the columns, and how much
work each cell does.

The texts' thesis is "pick the architecture that fits the structure of the data": images have a
grid (weight-shared filters fit them), a time series has an order in time (recurrence fits it), a
spelling-to-sound task is text to text (attention fits it). Each row is one kind of data and one
task; each cell one architecture trained on it by the real trainer. A cell is a registry name plus
flat settings (model, trainer and task fields, as ``--set`` takes them), so any cell can be rerun
by hand with ``archlab train``.

**Fixed work.** A cell's work is fixed in the plan: its optimiser steps (``steps``) and the sizes
of its evaluations (the row's settings: which held-out examples, how often the validation split is
scored). The same seed, torch build and thread count then give the same table on any machine and
under any load; a slower machine only takes longer. ``seconds`` is what the cell took (training
and evaluation, one thread, in CPU seconds, which a busy machine does not inflate), so the run can
say how long it should take and how long it did.

Plans scale that work: ``default`` (the whole bake-off in about five minutes on a quiet 2-core
CPU, two cells at a time), ``long`` (for quality: more steps, and for some cells other settings),
or a multiplier of the default steps (``0.05`` for a smoke test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from archlab.errors import ConfigError, check

ARCHS = ("MLP", "CNN", "RNN", "LSTM", "GRU", "Transformer", "Boosting")
VAL_POINTS = 8  # validation evaluations during a cell's training (its held-out curve)


@dataclass(frozen=True)
class Cell:
    arch: str                       # a column of ARCHS
    model: str                      # registry name
    settings: dict[str, Any] = field(default_factory=dict)  # flat model / trainer / task fields
    steps: int = 1000               # optimiser steps in the default plan
    seconds: float = 0.0            # measured CPU seconds of the cell (training + evaluation) in the default plan


@dataclass(frozen=True)
class Row:
    key: str                        # what --only takes
    kind: str                       # "images" | "time series" | "text" | "tabular"
    dataset: str                    # a data set name of archlab.data
    task: str                       # a registered task
    metric: str                     # the task metric reported in the matrix
    higher_is_better: bool
    cells: tuple[Cell, ...]
    description: str = ""
    # The baselines the row reports (archlab.compare.baselines names), in their own columns.
    baselines: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)  # fields every cell of the row shares
    baseline_seconds: float = 0.0   # measured CPU seconds of the row's baselines
    # The validation metric each network cell keeps its weights on ("" = ``metric``). The loss where
    # the metric is a count over a few hundred validation examples: accuracy on MNIST-5k's 400 moves in
    # steps of 0.25 points and ties, so its best point is as much luck as skill (seed 0 kept step
    # 1,250 of 2,000 at 98.25% validation accuracy, then scored 97.4% on test against 98.5% for the
    # last weights); the loss is its smooth surrogate.
    select_on: str = ""


@dataclass(frozen=True)
class Plan:
    """How much work each cell does: the default steps times ``scale``, with ``overrides`` (settings
    by ``"row"`` or ``"row/ARCH"``, steps included) on top. ``cells`` puts another cell of the same
    column in a cell's place (``"row/ARCH"``: a larger model of the family, with its own settings,
    steps and measured seconds, which the scale leaves as they are)."""

    name: str
    scale: float = 1.0
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    cells: dict[str, Cell] = field(default_factory=dict)

    def cell(self, row: Row, cell: Cell) -> Cell:
        """The cell this plan trains in ``cell``'s column of ``row``."""
        own = self.cells.get(f"{row.key}/{cell.arch}", cell)
        check(own.arch == cell.arch, f"plan {self.name!r} puts a {own.arch} cell in the {cell.arch} column")
        return own

    def steps(self, row: Row, cell: Cell) -> int:
        settings = self.settings(row, cell)
        if "max_steps" in settings:
            return int(settings["max_steps"])
        scale = 1.0 if f"{row.key}/{cell.arch}" in self.cells else self.scale
        return max(1, round(self.cell(row, cell).steps * scale))

    def settings(self, row: Row, cell: Cell) -> dict[str, Any]:
        """The cell's flat settings under this plan (before seed, steps and evaluation cadence)."""
        return {**row.settings, **self.cell(row, cell).settings, **self.overrides.get(row.key, {}),
                **self.overrides.get(f"{row.key}/{cell.arch}", {})}

    def estimate(self, row: Row, cell: Cell) -> float:
        """CPU seconds the cell should take: its measured seconds, scaled by its steps."""
        own = self.cell(row, cell)
        return own.seconds * self.steps(row, cell) / max(own.steps, 1)


_IMAGE = {"batch_size": 64, "lr": 2e-3, "warmup_steps": 20, "weight_decay": 0.01, "shift": 2}
_SERIES = {"batch_size": 64, "lr": 1e-2, "warmup_steps": 20, "weight_decay": 0.0,
           "context_length": 36, "horizon": 12}
_SUNSPOTS = {"batch_size": 32, "lr": 3e-3, "warmup_steps": 20, "weight_decay": 0.0,
             "context_length": 24, "horizon": 1}
# G2P: the validation curve decodes the first 500 of the 3,000 validation words; the test score, all
# 12,000 test words, in batches of 500.
_G2P = {"batch_size": 128, "lr": 3e-3, "warmup_steps": 20, "val_words": 500, "eval_batch_size": 500}
_RNN_G2P = {"embed_dim": 64, "hidden_size": 256, "num_layers": 1, "dropout": 0.0}
_TABLE_NET = {"batch_size": 64, "lr": 3e-3, "warmup_steps": 10, "weight_decay": 1e-4}  # networks only: trees refuse them

ROWS: tuple[Row, ...] = (
    Row("images", "images", "mnist5k", "classify", "accuracy", True,
        description="5,000 real MNIST digits, 28x28 grey: 3,600 train / 400 validation / 1,000 test",
        settings=_IMAGE, baselines=("svm", "majority_class"), baseline_seconds=7.0, select_on="loss",
        cells=(
            Cell("MLP", "mlp", {"hidden": (256, 128), "dropout": 0.1}, 1500, 9.0),
            Cell("CNN", "lenet5", {"input_size": 28, "activation": "relu", "pooling": "max"}, 2000, 24.0),
            Cell("RNN", "rnn_classifier", {"cell": "rnn", "hidden_size": 128}, 1000, 10.0),
            Cell("LSTM", "rnn_classifier", {"cell": "lstm", "hidden_size": 128}, 1000, 19.0),
            Cell("GRU", "rnn_classifier", {"cell": "gru", "hidden_size": 128}, 1000, 22.0),
            Cell("Transformer", "vit_tiny", {"dropout": 0.0}, 1500, 62.0),
        )),
    Row("series", "time series", "co2", "forecast", "rmse", False,
        description="Mauna Loa CO2, monthly 1958-2001; forecast the last 24 months (ppm) from the 478 "
                    "training and 24 validation months before them",
        settings=_SERIES, baselines=("naive", "seasonal_naive", "sarima"), baseline_seconds=7.0,
        cells=(
            Cell("MLP", "mlp_forecaster", {}, 800, 3.0),
            Cell("CNN", "cnn_forecaster", {}, 800, 10.0),
            Cell("RNN", "rnn_forecaster", {"cell": "rnn", "hidden_size": 32, "num_layers": 1, "relative": True},
                 800, 6.0),
            Cell("LSTM", "lstm_forecaster", {}, 800, 6.0),
            Cell("GRU", "gru_forecaster", {}, 800, 11.0),
            Cell("Transformer", "transformer_forecaster", {}, 800, 22.0),
        )),
    Row("sunspots", "time series", "sunspots", "forecast", "rmse_1step", False,
        description="Yearly sunspot numbers 1700-2008; one-step-ahead forecasts of the last 31 years from "
                    "the true history, beside AR(9)",
        settings=_SUNSPOTS, baselines=("naive", "seasonal_naive", "ar9"), baseline_seconds=0.5,
        cells=(
            Cell("MLP", "mlp_forecaster", {}, 600, 2.0),
            Cell("CNN", "cnn_forecaster", {}, 600, 6.0),
            Cell("RNN", "rnn_forecaster", {"cell": "rnn", "hidden_size": 32, "num_layers": 1}, 600, 3.0),
            Cell("LSTM", "lstm_forecaster", {}, 600, 4.0),
            Cell("GRU", "gru_forecaster", {}, 600, 7.0),
            Cell("Transformer", "transformer_forecaster", {}, 600, 12.0),
        )),
    Row("text", "text", "cmudict", "seq2seq", "wer", False,
        description="CMU Pronouncing Dictionary, spelling -> phonemes with stress; 3,000 validation and "
                    "12,000 test words",
        settings=_G2P,
        cells=(
            Cell("RNN", "seq2seq_rnn", {"cell": "rnn", **_RNN_G2P}, 400, 30.0),
            Cell("LSTM", "seq2seq_rnn", {"cell": "lstm", **_RNN_G2P}, 400, 40.0),
            Cell("GRU", "seq2seq_rnn", {"cell": "gru", **_RNN_G2P}, 400, 50.0),
            Cell("Transformer", "transformer",
                 {"d_model": 128, "nhead": 4, "num_encoder_layers": 2, "num_decoder_layers": 2,
                  "dim_feedforward": 512, "dropout": 0.0, "batch_size": 64, "lr": 2e-3, "warmup_steps": 40,
                  "label_smoothing": 0.1}, 2000, 190.0),
        )),
    # Columns without order or neighbourhood: trees split each column on its own scale. The trees stop
    # on the validation rows long before their share of the clock (about a second here).
    # A step of the trees is a boosting round (they stop early on the validation rows).
    Row("tabular", "tabular", "breast_cancer", "tabular", "accuracy", True,
        description="569 tumours x 30 numeric measurements (scikit-learn), malignant or benign; 114 test rows",
        baselines=("majority_class",), select_on="log_loss",
        cells=(
            Cell("MLP", "tabular_mlp", {"hidden": (128, 64), "dropout": 0.1, **_TABLE_NET}, 600, 4.0),
            Cell("Transformer", "ft_transformer",
                 {"d_token": 32, "num_layers": 2, "num_heads": 4, "dropout": 0.1, **_TABLE_NET}, 600, 15.0),
            Cell("Boosting", "lightgbm", {"learning_rate": 0.05, "num_leaves": 15}, 500, 2.0),
        )),
)

ROW_KEYS = tuple(r.key for r in ROWS)

# The long plan's CNN on digits: LeNet-5 on 3,600 training digits stays near 98.5% however long it
# trains, so the long plan puts a CIFAR ResNet-20 (Sec. 4.2 of He et al. 2015: 269k parameters, batch
# norm, three stages of 3x3 residual blocks) in that column, trained with SGD and Nesterov momentum as
# in the paper, 64 epochs, on digits turned by up to 12 degrees, zoomed by up to 12% and shifted by up
# to 2 pixels (Simard et al. 2003's distortions, without the elastic one). It keeps its last weights,
# where the cosine schedule ends: the 400 validation digits cannot tell its later points apart (seed 1,
# keeping the best of 8 validation losses, kept step 1,350 and scored 97.5% on test); the validation
# curve is still drawn.
_LONG_DIGITS_CNN = Cell("CNN", "resnet20", {"optimizer": "sgd", "nesterov": True, "lr": 0.05, "weight_decay": 5e-4,
                                            "warmup_steps": 100, "min_lr_ratio": 0.01, "rotate": 12.0, "zoom": 0.12,
                                            "select_metric": "last"},
                        3600, 660.0)

PLANS: dict[str, Plan] = {
    "default": Plan("default", 1.0, description="about 5 minutes on a quiet 2-core CPU"),
    "long": Plan("long", 8.0, description="8x the default steps, and ResNet-20 on turned digits, for quality",
                 cells={"images/CNN": _LONG_DIGITS_CNN}),
}


def parse_plan(text: str) -> Plan:
    """``default``, ``long``, or a multiplier of the default plan's steps (``0.05``, ``3``, ``x2``)."""
    name = str(text).strip().lower()
    if name in PLANS:
        return PLANS[name]
    try:
        scale = float(name.removeprefix("x").removesuffix("x"))
    except ValueError:
        raise ConfigError(f"--plan takes {', '.join(PLANS)} or a multiplier of the default steps such as 0.1 "
                          f"or 3, got {text!r}") from None
    check(math.isfinite(scale) and 0 < scale <= 1000, f"--plan multiplier must be in (0, 1000], got {text!r}")
    return replace(PLANS["default"], name=f"default x{scale:g}", scale=scale,
                   description=f"the default plan's steps x {scale:g}")


def select_rows(only: list[str] | None) -> list[Row]:
    """The rows ``--only`` names (a row key or its data set name); all rows when none is named."""
    if not only:
        return list(ROWS)
    chosen = []
    for name in only:
        match = [r for r in ROWS if name in (r.key, r.dataset)]
        if not match:
            names = ", ".join(f"{r.key} ({r.dataset})" for r in ROWS)
            raise ConfigError(f"--only {name!r} is not a row of the bake-off; rows: {names}")
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen


def select_archs(row: Row, archs: list[str] | None) -> list[Cell]:
    """The row's cells for the architectures ``--archs`` names (case-insensitive); all when none."""
    if not archs:
        return list(row.cells)
    wanted = {a.lower() for a in archs}
    unknown = sorted(wanted - {a.lower() for a in ARCHS})
    if unknown:
        raise ConfigError(f"--archs: unknown architecture(s) {', '.join(unknown)}; columns are {', '.join(ARCHS)}")
    return [c for c in row.cells if c.arch.lower() in wanted]
