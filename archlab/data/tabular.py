"""Tabular data: rows of numeric and categorical columns and a target, for classification or regression.

Offline, from the files scikit-learn ships:
    "breast_cancer"  569 tumours x 30 numeric measurements -> malignant / benign (Wolberg et al., UCI)
    "wine"           178 wines x 13 numeric measurements -> one of 3 cultivars (Forina et al., UCI)
    "diabetes"       442 patients x 10 numeric measurements -> disease progression a year later
                     (Efron et al. 2004), in the original units (``load_diabetes(scaled=False)``)
User data:
    a CSV file (``,``, ``;``, tab or ``|`` separated) with a header row naming the columns. The
    target is the column named by ``target``, or the one column called target / label / class / y.

A cell is a number or a category (any other text); an empty cell, ``NA``, ``N/A``, ``NaN``,
``null``, ``None`` or ``?`` is missing. A column is numeric when every present value is a number,
categorical otherwise. The task follows the target: a text target, or whole numbers with at most
``MAX_CLASSES`` distinct values, is classification; other numbers are regression.

Splits are fixed by a seed (stratified by class for classification): ``split(seed)`` holds out
``test_fraction`` of the rows for test and ``val_fraction`` for validation; ``kfold(k, seed)``
gives k disjoint test folds instead. Everything that looks at values -- imputation, scaling, the
categories -- is fitted on the training rows only (``TabularEncoder``):

    numeric x_j      missing -> m_j, the training median;  z_j = (x_j - mu_j) / sigma_j
                     (training mean and standard deviation), plus a 0/1 column "x_j was missing" for
                     every column with a missing value among the training rows
    categorical c_j  the training categories, sorted, get codes 1..K_j; 0 = missing or unseen
    target           classes sorted -> codes 0..K-1;  regression: t = (y - mu_y) / sigma_y
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archlab.data.common import SEED, unknown_name
from archlab.data.text import read_text_file
from archlab.errors import ConfigError, check

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
TARGET_NAMES = ("target", "label", "class", "y")   # column names taken as the target when none is given
MAX_CLASSES = 20                                   # a whole-number target with more values is a regression
MIN_ROWS = 10                                      # fewer cannot be split into training and test
OBJECTIVES = ("classification", "regression")
NUMERIC, CATEGORICAL = "numeric", "categorical"
TABULAR_SETS = ("breast_cancer", "wine", "diabetes")


# --------------------------------------------------------------------------------------------
# Reading delimited files


@dataclass
class Table:
    """A delimited file as text: its header, its rows, and each row's line number in the file."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    delimiter: str


def read_table(path: str | os.PathLike, delimiter: str | None = None) -> Table:
    """A CSV/TSV file with a header row; a clear ``ConfigError`` naming the file (and line) otherwise.

    The delimiter is a tab for ``.tsv`` files and sniffed among ``, ; TAB |`` for others.
    """
    path = Path(path).expanduser()
    text = read_text_file(path).lstrip("\ufeff")
    check(text.strip() != "", f"{path}: empty file, expected a header row naming the columns and rows of values")
    if delimiter is None:
        if path.suffix.lower() == ".tsv":
            delimiter = "\t"
        else:
            try:
                delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
            except csv.Error:
                delimiter = ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    rows, lines = [], []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            if header is None:
                header = [h.strip() for h in row]
                for i, name in enumerate(header):
                    check(name != "", f"{path}, line {reader.line_num}: column {i + 1} of the header has no name")
                seen = set()
                for name in header:
                    check(name not in seen, f"{path}, line {reader.line_num}: column {name!r} appears twice in the header")
                    seen.add(name)
                continue
            check(len(row) == len(header),
                  f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
            rows.append([cell.strip() for cell in row])
            lines.append(reader.line_num)
    except csv.Error as e:
        raise ConfigError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from e
    assert header is not None
    return Table(path, header, rows, lines, delimiter)


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def parse_number(cell: str) -> float | None:
    """The number written in ``cell``, or None when it is not one (missing cells are not numbers)."""
    if is_missing(cell):
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def column_is_numeric(cells: list[str]) -> bool:
    """True when every present cell is a number (and at least one is present)."""
    present = [c for c in cells if not is_missing(c)]
    return bool(present) and all(parse_number(c) is not None for c in present)


# --------------------------------------------------------------------------------------------
# The data set


@dataclass
class Split:
    train: np.ndarray   # row indices (int64)
    val: np.ndarray
    test: np.ndarray


@dataclass
class TabularData:
    """Feature columns (raw values), a target, and what kind of problem it is."""

    name: str
    columns: list[str]                    # feature columns in file order
    kinds: list[str]                      # NUMERIC | CATEGORICAL per feature column
    values: list[np.ndarray]              # numeric: float64 with NaN = missing; categorical: object, None = missing
    target: str
    objective: str                        # "classification" | "regression"
    y: np.ndarray                         # int64 class codes, or float64 values
    classes: list[str] = field(default_factory=list)  # class names by code; empty for regression
    source: str = ""

    def __len__(self) -> int:
        return len(self.y)

    @property
    def numeric_columns(self) -> list[str]:
        return [c for c, k in zip(self.columns, self.kinds) if k == NUMERIC]

    @property
    def categorical_columns(self) -> list[str]:
        return [c for c, k in zip(self.columns, self.kinds) if k == CATEGORICAL]

    def missing_counts(self) -> dict[str, int]:
        """Missing cells per feature column (only the columns that have any)."""
        out = {}
        for name, kind, v in zip(self.columns, self.kinds, self.values):
            n = int(np.isnan(v).sum()) if kind == NUMERIC else int(sum(x is None for x in v))
            if n:
                out[name] = n
        return out

    def split(self, seed: int = SEED, test_fraction: float = 0.2, val_fraction: float = 0.1) -> Split:
        """Seeded train / validation / test rows; each class keeps its share in every part."""
        check(0 < test_fraction < 1 and 0 <= val_fraction and test_fraction + val_fraction < 1,
              f"test_fraction must be in (0, 1) and test_fraction + val_fraction < 1, got {test_fraction} "
              f"and {val_fraction}")
        rest, test = self._holdout(np.arange(len(self)), test_fraction, seed)
        # val_fraction of all rows is val_fraction / (1 - test_fraction) of those left.
        train, val = self._holdout(rest, val_fraction / (1 - test_fraction), seed + 1)
        return self._checked(Split(train, val, test))

    def kfold(self, k: int, fold: int, seed: int = SEED, val_fraction: float = 0.1) -> Split:
        """Fold ``fold`` of k-fold cross-validation: its rows are the test part, the other k - 1 folds
        are split into training and ``val_fraction`` (of all rows) for validation. Every row is in
        exactly one test fold; classes are spread evenly over the folds."""
        check(k >= 2, f"folds must be >= 2, got {k}")
        check(0 <= fold < k, f"fold must be in 0..{k - 1} for folds={k}, got {fold}")
        check(len(self) >= 2 * k, f"{self.name}: {len(self)} rows cannot make {k} folds")
        rng = np.random.default_rng(seed)
        assign = np.empty(len(self), dtype=np.int64)
        groups = [np.flatnonzero(self.y == c) for c in range(len(self.classes))] if self.classification \
            else [np.arange(len(self))]
        offset = 0
        for members in groups:  # deal each class's rows round the folds, continuing where the last stopped
            members = rng.permutation(members)
            assign[members] = (np.arange(len(members)) + offset) % k
            offset += len(members)
        test = np.flatnonzero(assign == fold)
        rest = rng.permutation(np.flatnonzero(assign != fold))
        share = min(val_fraction * len(self) / max(len(rest), 1), 0.5)
        train, val = self._holdout(rest, share, seed + 1)
        return self._checked(Split(train, val, rng.permutation(test)))

    @property
    def classification(self) -> bool:
        return self.objective == "classification"

    def _holdout(self, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(kept, held out): ``fraction`` of ``rows``, per class for classification."""
        rng = np.random.default_rng(seed)
        if self.classification:
            from archlab.data.common import stratified_split

            keep, out = stratified_split(self.y[rows], fraction, seed)
            return rows[keep], rows[out]
        rows = rng.permutation(rows)
        n_out = int(round(fraction * len(rows)))
        return rows[n_out:], rows[:n_out]

    def _checked(self, split: Split) -> Split:
        check(len(split.train) >= 2 and len(split.test) >= 1,
              f"{self.name}: {len(self)} rows leave {len(split.train)} for training and {len(split.test)} for "
              f"test; a tabular data set needs at least {MIN_ROWS} rows")
        return split


# --------------------------------------------------------------------------------------------
# Building a data set: from columns of text, from a CSV file, from scikit-learn


def infer_target(header: list[str], where: str) -> str:
    """The one column named like a target (target / label / class / y, any case)."""
    named = [h for h in header if h.strip().lower() in TARGET_NAMES]
    check(len(named) == 1,
          f"{where}: which column is the target? No column is named {' / '.join(TARGET_NAMES)}"
          f"{'' if not named else ' (several are: ' + ', '.join(named) + ')'}; name it with target=COLUMN "
          f"(one of {', '.join(header)})")
    return named[0]


def infer_objective(cells: list[str]) -> str:
    """classification for text or whole numbers with few distinct values, regression otherwise."""
    numbers = [parse_number(c) for c in cells]
    if any(v is None for v in numbers):
        return "classification"
    distinct = set(numbers)
    if all(float(v).is_integer() for v in distinct) and len(distinct) <= MAX_CLASSES:
        return "classification"
    return "regression"


def from_table(table: Table, target: str | None = None, objective: str = "auto", name: str | None = None,
               categorical: tuple[str, ...] = ()) -> TabularData:
    """A ``TabularData`` from the text cells of a ``Table``; ``categorical`` names columns to treat as
    categories even when they hold numbers (codes, zip codes)."""
    where = str(table.path)
    for col in categorical:
        check(col in table.header, f"{where}: categorical column {col!r} is not a column; the header has "
                                   f"{', '.join(map(repr, table.header))}")
    check(len(table.rows) >= MIN_ROWS,
          f"{where}: {len(table.rows)} data row(s); a tabular data set needs at least {MIN_ROWS} rows "
          "(a header row, then one row per example)")
    check(len(table.header) >= 2, f"{where}: {len(table.header)} column; expected feature columns and a target column")
    target = target or infer_target(table.header, where)
    check(target in table.header,
          f"{where}: target={target!r} is not a column; the header has {', '.join(map(repr, table.header))}")
    check(objective in ("auto", *OBJECTIVES), f"objective must be auto, classification or regression, got {objective!r}")
    ti = table.header.index(target)
    target_cells = [row[ti] for row in table.rows]
    for cell, line in zip(target_cells, table.lines):
        check(not is_missing(cell), f"{where}, line {line}: the target column {target!r} is empty; every row needs a "
                                    "target (fill it or remove the row)")
    if objective == "auto":
        objective = infer_objective(target_cells)
    if objective == "regression":
        numbers = [parse_number(c) for c in target_cells]
        for v, cell, line in zip(numbers, target_cells, table.lines):
            check(v is not None and math.isfinite(v),
                  f"{where}, line {line}: target {target!r} holds {cell!r}, a regression needs a finite number")
        y, classes = np.asarray(numbers, dtype=np.float64), []
    else:
        classes = _sorted_labels(set(target_cells))
        code = {c: i for i, c in enumerate(classes)}
        y = np.asarray([code[c] for c in target_cells], dtype=np.int64)
        check(len(classes) >= 2, f"{where}: the target {target!r} has one class ({classes[0]!r}); classification needs "
                                 "at least 2")
    columns, kinds, values = [], [], []
    for j, col in enumerate(table.header):
        if j == ti:
            continue
        cells = [row[j] for row in table.rows]
        columns.append(col)
        if col not in categorical and column_is_numeric(cells):
            v = np.asarray([np.nan if is_missing(c) else float(c) for c in cells], dtype=np.float64)
            bad = np.flatnonzero(np.isinf(v))
            if len(bad):
                raise ConfigError(f"{where}, line {table.lines[bad[0]]}: column {col!r} holds {cells[bad[0]]!r}; "
                                  "expected a finite number")
            kinds.append(NUMERIC), values.append(v)
        else:
            if col not in categorical:
                _check_stray_text(cells, col, table)
            kinds.append(CATEGORICAL)
            values.append(np.asarray([None if is_missing(c) else c for c in cells], dtype=object))
    return TabularData(name or table.path.stem, columns, kinds, values, target, objective, y, classes, where)


def _check_stray_text(cells: list[str], col: str, table: Table) -> None:
    """A column of numbers with one or two stray words is a typo, not a categorical column: say where."""
    present = [(c, line) for c, line in zip(cells, table.lines) if not is_missing(c)]
    stray = [(c, line) for c, line in present if parse_number(c) is None]
    if len(present) >= 10 and len(stray) <= 2:
        cell, line = stray[0]
        raise ConfigError(f"{table.path}, line {line}: column {col!r} holds {cell!r} among numbers; write a number, "
                          "leave the cell empty (missing), or list the column in categorical=")


def _sorted_labels(labels: set[str]) -> list[str]:
    """Class names in order: numerically when they are all numbers ("2" before "10"), else as text."""
    if all(parse_number(x) is not None for x in labels):
        return sorted(labels, key=lambda x: (float(x), x))
    return sorted(labels)


@functools.lru_cache(maxsize=None)
def _sklearn_set(name: str) -> tuple[Any, ...]:
    from sklearn import datasets

    if name == "diabetes":
        d = datasets.load_diabetes(scaled=False)
        return tuple(map(str, d.feature_names)), d.data, d.target, (), "progression"
    d = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[name]()
    return tuple(map(str, d.feature_names)), d.data, d.target, tuple(map(str, d.target_names)), "diagnosis" \
        if name == "breast_cancer" else "cultivar"


def load_sklearn_table(name: str) -> TabularData:
    """One of scikit-learn's bundled tables (see the module docstring)."""
    columns, x, y, classes, target = _sklearn_set(name)
    values = [np.asarray(x[:, j], dtype=np.float64).copy() for j in range(x.shape[1])]
    objective = "classification" if classes else "regression"
    y = np.asarray(y, dtype=np.int64 if classes else np.float64).copy()
    return TabularData(name, list(columns), [NUMERIC] * len(columns), values, target, objective, y, list(classes),
                       f"sklearn.datasets.load_{name}")


def load_tabular(name_or_path: str | os.PathLike, target: str | None = None, objective: str = "auto",
                 categorical: tuple[str, ...] = ()) -> TabularData:
    """A named table ("breast_cancer", "wine", "diabetes") or a CSV file (see the module docstring)."""
    name = str(name_or_path)
    if name in TABULAR_SETS:
        data = load_sklearn_table(name)
        check(target in (None, "", data.target), f"{name} has the target {data.target!r}; got target={target!r}")
        check(objective in ("auto", data.objective), f"{name} is a {data.objective} data set; got objective={objective!r}")
        check(not categorical, f"{name} has numeric columns only; got categorical={tuple(categorical)}")
        return data
    path = Path(name).expanduser()
    if path.is_file():
        return from_table(read_table(path), target or None, objective, categorical=tuple(categorical))
    if path.is_dir():
        raise ConfigError(f"tabular data {name!r} is a folder; expected a CSV file or one of {', '.join(TABULAR_SETS)}")
    raise unknown_name("tabular data set", name, TABULAR_SETS, extra=", or the path of a CSV file")


# --------------------------------------------------------------------------------------------
# Encoding, fitted on the training rows


@dataclass
class TabularEncoder:
    """Imputation, scaling and category codes fitted on training rows (see the module docstring).

    Saved beside a checkpoint as JSON (``to_dict`` / ``from_dict``) so evaluation encodes new rows
    exactly as training did.
    """

    columns: list[str]
    kinds: list[str]
    median: dict[str, float]            # numeric column -> training median (the fill for missing cells)
    mean: dict[str, float]              # numeric column -> training mean
    std: dict[str, float]               # numeric column -> training standard deviation (1 when constant)
    indicators: list[str]               # numeric columns that get a "was missing" column
    categories: dict[str, list[str]]    # categorical column -> its training categories, sorted (code = index + 1)
    objective: str
    classes: list[str]
    target_mean: float = 0.0            # regression: mu_y and sigma_y of the training targets
    target_std: float = 1.0

    @classmethod
    def fit(cls, data: TabularData, rows: np.ndarray) -> "TabularEncoder":
        median, mean, std, indicators, categories = {}, {}, {}, [], {}
        for name, kind, v in zip(data.columns, data.kinds, data.values):
            part = v[rows]
            if kind == NUMERIC:
                present = part[~np.isnan(part)]
                if len(present) == 0:  # never seen in training: a constant column
                    present = np.zeros(1)
                median[name], mean[name] = float(np.median(present)), float(present.mean())
                sd = float(present.std())
                std[name] = sd if sd > 1e-12 else 1.0
                if len(present) < len(part):
                    indicators.append(name)
            else:
                categories[name] = sorted({x for x in part if x is not None})
        t_mean, t_std = 0.0, 1.0
        if not data.classification:
            y = data.y[rows]
            t_mean, t_std = float(y.mean()), float(y.std()) if float(y.std()) > 1e-12 else 1.0
        return cls(list(data.columns), list(data.kinds), median, mean, std, indicators, categories,
                   data.objective, list(data.classes), t_mean, t_std)

    # -- what the models see -------------------------------------------------------------------
    @property
    def numeric_features(self) -> list[str]:
        """Names of the columns of ``x_num``: the numeric columns, then one "was missing" per indicator."""
        return [c for c, k in zip(self.columns, self.kinds) if k == NUMERIC] + [f"{c} (missing)" for c in self.indicators]

    @property
    def categorical_features(self) -> list[str]:
        return [c for c, k in zip(self.columns, self.kinds) if k == CATEGORICAL]

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Codes per categorical column: its training categories + 1 (code 0: missing or unseen)."""
        return tuple(len(self.categories[c]) + 1 for c in self.categorical_features)

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.objective == "classification" else 1

    def check_fits(self, data: TabularData) -> None:
        """A clear error when ``data`` does not have the columns this encoder was fitted on."""
        check(data.columns == self.columns and data.kinds == self.kinds,
              f"{data.name} has columns {_describe(data.columns, data.kinds)}, the model was trained on "
              f"{_describe(self.columns, self.kinds)}")
        check(data.objective == self.objective,
              f"{data.name} is a {data.objective} problem, the model was trained for {self.objective}")
        if data.classification:
            check(data.classes == self.classes, f"{data.name} has classes {data.classes}, the model was trained on "
                                                f"{self.classes}")

    def transform(self, data: TabularData, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x_num`` float32 (N, numeric features) and ``x_cat`` int64 (N, categorical columns) of ``rows``."""
        nums, indicators, cats = [], [], []
        for name, kind, v in zip(self.columns, self.kinds, data.values):
            part = v[rows]
            if kind == NUMERIC:
                missing = np.isnan(part)
                filled = np.where(missing, self.median[name], part)
                nums.append((filled - self.mean[name]) / self.std[name])
                if name in self.indicators:
                    indicators.append(missing.astype(np.float64))
            else:
                code = {c: i + 1 for i, c in enumerate(self.categories[name])}
                cats.append(np.asarray([code.get(x, 0) for x in part], dtype=np.int64))
        n = len(rows)
        x_num = np.stack(nums + indicators, axis=1) if nums else np.zeros((n, 0))
        x_cat = np.stack(cats, axis=1) if cats else np.zeros((n, 0), dtype=np.int64)
        return x_num.astype(np.float32), x_cat

    def encode_target(self, y: np.ndarray) -> np.ndarray:
        """Class codes unchanged; regression targets standardised with the training mu_y, sigma_y."""
        if self.objective == "classification":
            return np.asarray(y, dtype=np.int64)
        return ((np.asarray(y, dtype=np.float64) - self.target_mean) / self.target_std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TabularEncoder":
        return cls(**d)


def _describe(columns: list[str], kinds: list[str]) -> str:
    shown = ", ".join(f"{c} ({k[:3]})" for c, k in zip(columns[:6], kinds[:6]))
    return f"[{shown}{', ...' if len(columns) > 6 else ''}] ({len(columns)} in all)"
