"""The bake-off as data: which data sets are the rows, which architectures the columns, and how each
cell is trained.

The texts' thesis is "pick the architecture that fits the structure of the data": images have a
grid (weight-shared filters fit them), a time series has an order in time (recurrence fits it), a
spelling-to-sound task is text to text (attention fits it). Each row is one kind of data and one
task; each cell one architecture trained on it by the real trainer, with the same budget rules for
all. A cell is a registry name plus flat settings (model, trainer and task fields, as ``--set``
takes them), so any cell can be rerun by hand with ``archlab train``.

Budgets are shares: a row gets ``share`` of the run's budget, a cell ``weight / sum(weights)`` of its
row's. Heavier cells are those whose architecture needs more steps to show what it can do, not
favourites: every cell's steps come from the same clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archlab.errors import ConfigError

ARCHS = ("MLP", "CNN", "RNN", "LSTM", "GRU", "Transformer", "Boosting")


@dataclass(frozen=True)
class Cell:
    arch: str                       # a column of ARCHS
    model: str                      # registry name
    settings: dict[str, Any] = field(default_factory=dict)  # flat model / trainer / task fields
    weight: float = 1.0             # share of the row's budget, relative to the row's other cells


@dataclass(frozen=True)
class Row:
    key: str                        # what --only takes
    kind: str                       # "images" | "time series" | "text" | "tabular"
    dataset: str                    # a data set name of archlab.data
    task: str                       # a registered task
    metric: str                     # the task metric reported in the matrix
    higher_is_better: bool
    share: float                    # share of the run's budget
    cells: tuple[Cell, ...]
    description: str = ""
    # The baselines the row reports: task.baselines() names -> label in the matrix.
    baselines: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)  # fields every cell of the row shares


_IMAGE = {"batch_size": 64, "lr": 2e-3, "warmup_steps": 20, "weight_decay": 0.01, "shift": 2}
_SERIES = {"batch_size": 64, "lr": 1e-2, "warmup_steps": 20, "weight_decay": 0.0,
           "context_length": 36, "horizon": 12}
_G2P = {"batch_size": 128, "lr": 3e-3, "warmup_steps": 20}
_RNN_G2P = {"embed_dim": 64, "hidden_size": 256, "num_layers": 1, "dropout": 0.0}
_TABLE_NET = {"batch_size": 64, "lr": 3e-3, "warmup_steps": 10, "weight_decay": 1e-4}  # networks only: trees refuse them

ROWS: tuple[Row, ...] = (
    Row("images", "images", "mnist5k", "classify", "accuracy", True, 0.28,
        description="5,000 real MNIST digits (4,000 train / 1,000 test), 28x28 grey",
        settings=_IMAGE, baselines=("majority_class",),
        cells=(
            Cell("MLP", "mlp", {"hidden": (256, 128), "dropout": 0.1}, 0.6),
            Cell("CNN", "lenet5", {"input_size": 28, "activation": "relu", "pooling": "max"}, 1.0),
            Cell("RNN", "rnn_classifier", {"cell": "rnn", "hidden_size": 128}, 0.8),
            Cell("LSTM", "rnn_classifier", {"cell": "lstm", "hidden_size": 128}, 1.2),
            Cell("GRU", "rnn_classifier", {"cell": "gru", "hidden_size": 128}, 1.2),
            Cell("Transformer", "vit_tiny", {"dropout": 0.0}, 1.2),
        )),
    Row("series", "time series", "co2", "forecast", "rmse", False, 0.14,
        description="Mauna Loa CO2, monthly 1958-2001; forecast the last 24 months (ppm)",
        settings=_SERIES, baselines=("naive", "seasonal_naive"),
        cells=(
            Cell("MLP", "mlp_forecaster", {}, 1.0),
            Cell("CNN", "cnn_forecaster", {}, 1.0),
            Cell("RNN", "rnn_forecaster", {"cell": "rnn", "hidden_size": 32, "num_layers": 1, "relative": True}, 1.0),
            Cell("LSTM", "lstm_forecaster", {}, 1.0),
            Cell("GRU", "gru_forecaster", {}, 1.0),
            Cell("Transformer", "transformer_forecaster", {}, 1.0),
        )),
    Row("text", "text", "cmudict", "seq2seq", "wer", False, 0.53,
        description="CMU Pronouncing Dictionary, spelling -> phonemes with stress; 12,000 test words",
        settings=_G2P,
        cells=(
            Cell("RNN", "seq2seq_rnn", {"cell": "rnn", **_RNN_G2P}, 0.6),
            Cell("LSTM", "seq2seq_rnn", {"cell": "lstm", **_RNN_G2P}, 1.0),
            Cell("GRU", "seq2seq_rnn", {"cell": "gru", **_RNN_G2P}, 1.0),
            Cell("Transformer", "transformer",
                 {"d_model": 128, "nhead": 4, "num_encoder_layers": 2, "num_decoder_layers": 2,
                  "dim_feedforward": 512, "dropout": 0.0, "batch_size": 64, "lr": 2e-3, "warmup_steps": 40}, 2.2),
        )),
    # Columns without order or neighbourhood: trees split each column on its own scale. The trees stop
    # on the validation rows long before their share of the clock (about a second here).
    Row("tabular", "tabular", "breast_cancer", "tabular", "accuracy", True, 0.05,
        description="569 tumours x 30 numeric measurements (scikit-learn), malignant or benign; 114 test rows",
        baselines=("majority_class",),
        cells=(
            Cell("MLP", "tabular_mlp", {"hidden": (128, 64), "dropout": 0.1, **_TABLE_NET}, 1.0),
            Cell("Transformer", "ft_transformer",
                 {"d_token": 32, "num_layers": 2, "num_heads": 4, "dropout": 0.1, **_TABLE_NET}, 2.0),
            Cell("Boosting", "lightgbm", {"learning_rate": 0.05, "num_leaves": 15}, 1.0),
        )),
)

ROW_KEYS = tuple(r.key for r in ROWS)


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
