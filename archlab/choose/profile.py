"""What a data set is, measured: its kind, the task that fits it, and the properties the rules cite.

``profile(DATA)`` takes a name archlab knows (``mnist5k``, ``co2``, ``breast_cancer``, ...) or a path,
and decides the kind of data:

    images        a folder with one subfolder of images per class          -> task classify
    series        a CSV of a date column and a numeric column, or of one    -> task forecast
                  numeric column (values in time order)
    tabular       a CSV of numeric / categorical columns and a target       -> task tabular
    text-pairs    a TSV of source<TAB>target lines                          -> task seq2seq
    text-labels   a TSV of text<TAB>label lines, or a CSV of a text column  -> task textclass
                  and a label column
    text          any other text file                                       -> task lm

``--task`` overrides the guess. Then it loads the data the way the task will and measures it
(rows, classes, image sizes, lengths, column types, missing values). A file that cannot be read,
or a table whose target cannot be told, is a ``ConfigError`` saying what to pass.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archlab.errors import ConfigError, check

KIND_TASK = {"images": "classify", "series": "forecast", "tabular": "tabular", "text-pairs": "seq2seq",
             "text-labels": "textclass", "text": "lm"}
TASK_KIND = {task: kind for kind, task in KIND_TASK.items()}
CATALOG_KIND = {"image": "images", "series": "series", "tabular": "tabular", "pronunciation": "text-pairs",
                "labelled_text": "text-labels", "text": "text"}
DATE_NAMES = {"date", "time", "datetime", "timestamp", "month", "year", "day", "week"}


@dataclass
class Profile:
    data: str                                  # as given: a known name or a path
    kind: str                                  # a key of KIND_TASK
    task: str                                  # the registered task that trains on it
    properties: dict[str, Any]                 # what was measured (the rules' reasons cite these)
    task_settings: dict[str, Any] = field(default_factory=dict)  # what the task needs to read it (target, ...)
    summary: str = ""                          # one line: what it is


def profile(data: str, *, target: str | None = None, task: str | None = None) -> Profile:
    """Decide the kind of ``data`` (a known name or a path) and measure it."""
    from archlab.data.catalog import DATASETS

    if task is not None:
        check(task in TASK_KIND, f"--task must be one of {', '.join(sorted(TASK_KIND))}, got {task!r}")
    name = str(data)
    path = Path(name).expanduser()
    if name in DATASETS:
        kind = CATALOG_KIND[DATASETS[name].kind]
    elif path.is_dir():
        kind = "images"
    elif path.is_file():
        kind = _file_kind(path, target)
    else:
        known = ", ".join(n for n, d in DATASETS.items() if d.offline)
        raise ConfigError(f"DATA {name!r} is neither a data set archlab knows ({known}) nor an existing file or "
                          "folder; pass one of those names or the path of your data")
    if task is not None:
        kind = TASK_KIND[task]
    if target is not None:
        check(kind in ("tabular", "series"), f"--target names a column of a table or a series; {name!r} is "
                                             f"{kind} data (drop --target)")
    measure = {"images": _images, "series": _series, "tabular": _tabular, "text-pairs": _pairs,
               "text-labels": _labels, "text": _text}[kind]
    props, settings, summary = measure(name, target)
    return Profile(name, kind, KIND_TASK[kind], props, settings, summary)


# --------------------------------------------------------------------------------------------
# Which kind a file is


def _file_kind(path: Path, target: str | None) -> str:
    from archlab.data.text import read_text_file

    text = read_text_file(path)
    lines = [line for line in text.splitlines() if line.strip()]
    check(lines, f"{path}: empty file; expected a CSV/TSV table or text")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_kind(path, target)
    tabbed = sum("\t" in line for line in lines) >= 0.9 * len(lines)
    if suffix == ".tsv" or tabbed:
        return _tsv_kind(path, lines)
    return "text"


def _csv_kind(path: Path, target: str | None) -> str:
    from archlab.data.tabular import column_is_numeric, read_table

    table = read_table(path)
    check(len(table.rows) >= 2, f"{path}: {len(table.rows)} data row(s) under the header; a data set needs many rows "
                                "(a header naming the columns, then one row per example)")
    columns = {h: [row[i] for row in table.rows] for i, h in enumerate(table.header)}
    if target is not None:
        check(target in columns, f"{path}: --target {target!r} is not a column; the header has "
                                 f"{', '.join(map(repr, table.header))}")
    numeric = [h for h, cells in columns.items() if column_is_numeric(cells)]
    dates = [h for h, cells in columns.items() if _is_date_column(h, cells) and (h not in numeric or
                                                                                 h.lower() in DATE_NAMES)]
    texts = [h for h, cells in columns.items() if h not in numeric and _is_free_text(cells)]
    others = [h for h in table.header if h not in dates]
    if len(table.header) == 1 and numeric:
        return "series"  # one ordered numeric column
    if len(dates) == 1 and all(h in numeric for h in others) and (len(others) == 1 or target in others):
        return "series"
    if len(texts) == 1 and len(table.header) == 2:
        return "text-labels"
    return "tabular"


def _is_date_column(name: str, cells: list[str]) -> bool:
    present = [c.strip() for c in cells if c.strip()]
    if not present:
        return False
    try:
        dates = np.array([np.datetime64(c, "D") for c in present])
    except ValueError:
        return False
    return len(dates) >= 2 and bool(np.all(dates[1:] > dates[:-1]))  # strictly increasing: a time axis


def _is_free_text(cells: list[str]) -> bool:
    """Sentences rather than categories: several words on average and mostly distinct."""
    present = [c for c in cells if c.strip()]
    if not present:
        return False
    words = np.mean([len(c.split()) for c in present])
    return words >= 3 and len(set(present)) >= 0.5 * len(present)


def _tsv_kind(path: Path, lines: list[str]) -> str:
    fields = [line.split("\t") for line in lines]
    width = Counter(len(f) for f in fields).most_common(1)[0][0]
    if width >= 3:  # a table with a header and numeric columns, or pairs with extra fields (a licence note)
        from archlab.data.tabular import column_is_numeric

        body = [f for f in fields[1:] if len(f) == width]
        if any(column_is_numeric([f[j] for f in body]) for j in range(width)):
            return "tabular"
    rows = [f for f in fields if len(f) >= 2]
    if rows and rows[0][0].strip().lower() == "text" and rows[0][-1].strip().lower() == "label":
        rows = rows[1:]  # a header
    labels = [f[1].strip() for f in rows]
    few = len(set(labels)) <= max(2, len(labels) // 4)
    short = np.mean([len(label.split()) for label in labels]) <= 3 if labels else False
    return "text-labels" if (few and short and width == 2) else "text-pairs"


# --------------------------------------------------------------------------------------------
# Measuring each kind: (properties, task settings, summary)


def _images(name: str, target):
    from archlab.data import load_image_data

    data = load_image_data(name)
    C, H, W = data.image_shape
    y = np.concatenate([data.train.tensors[1].numpy(), data.test.tensors[1].numpy()])
    counts = np.bincount(y, minlength=data.num_classes)
    n = int(len(y))
    props = {"n_images": n, "n_train": int(len(data.train)), "n_test": int(len(data.test)), "height": H, "width": W,
             "channels": C, "colour": "grey" if C == 1 else "colour", "square": H == W, "side": max(H, W),
             "pixels": C * H * W, "classes": data.num_classes, "smallest_class": int(counts.min()),
             "largest_class": int(counts.max())}
    summary = (f"{n:,} {props['colour']} images of {H}x{W} pixels in {data.num_classes} classes "
               f"({counts.min():,} to {counts.max():,} per class)")
    return props, {}, summary


def _series(name: str, target):
    from archlab.data import load_series
    from archlab.data.tabular import column_is_numeric, read_table
    from archlab.tasks.forecast import infer_season

    settings: dict[str, Any] = {}
    if Path(name).expanduser().is_file():
        table = read_table(name)
        cols = {h: [r[i] for r in table.rows] for i, h in enumerate(table.header)}
        numeric = [h for h, c in cols.items() if column_is_numeric(c)]
        dates = [h for h, c in cols.items() if _is_date_column(h, c) and (h not in numeric or h.lower() in DATE_NAMES)]
        values = [h for h in numeric if h not in dates]
        value = target or (values[0] if len(values) == 1 else None)
        check(value is not None, f"{name}: which column is the series? pass --target COLUMN (one of "
                                 f"{', '.join(values) or ', '.join(table.header)})")
        settings = {"value_column": value, **({"date_column": dates[0]} if dates else {})}
    series = load_series(name, settings.get("value_column"), settings.get("date_column"))
    season, why = infer_season(series.name, series.frequency, series.dates)
    v = series.values
    props = {"length": len(v), "train_length": len(series.train), "frequency": series.frequency or _frequency(series.dates),
             "has_dates": series.dates is not None, "season": season or 0, "season_source": why,
             "acf1": _autocorrelation(v, 1), "acf_season": _autocorrelation(np.diff(v), season) if season else 0.0}
    span = f"{series.dates[0]} to {series.dates[-1]}" if series.dates is not None else "no dates"
    summary = f"{len(v):,} {props['frequency']} values ({span}), lag-1 autocorrelation {props['acf1']:.2f}" + (
        f", a season of {season} steps ({why})" if season else "")
    return props, settings, summary


def _frequency(dates: np.ndarray | None) -> str:
    """"daily", "weekly", "monthly", "quarterly" or "yearly" from the median gap between dates; else "ordered"."""
    if dates is None or len(dates) < 2:
        return "ordered"
    gap = float(np.median(np.diff(dates).astype(np.int64)))
    for lo, hi, word in ((1, 1, "daily"), (7, 7, "weekly"), (28, 31, "monthly"), (89, 92, "quarterly"),
                         (365, 366, "yearly")):
        if lo <= gap <= hi:
            return word
    return "ordered"


def _autocorrelation(v: np.ndarray, lag: int) -> float:
    v = np.asarray(v, dtype=np.float64)
    if lag <= 0 or len(v) <= lag + 1:
        return 0.0
    a, b = v[:-lag] - v.mean(), v[lag:] - v.mean()
    denominator = float(np.sum((v - v.mean()) ** 2))
    return float(np.sum(a * b) / denominator) if denominator > 0 else 0.0


def _tabular(name: str, target):
    from archlab.data.tabular import TARGET_NAMES, load_tabular, read_table

    settings: dict[str, Any] = {}
    if Path(name).expanduser().is_file():
        if target is None:
            header = read_table(name).header
            named = [h for h in header if h.strip().lower() in TARGET_NAMES]
            check(len(named) == 1, f"{name}: which column is the target? pass --target COLUMN (one of "
                                   f"{', '.join(header)})")
            target = named[0]
        settings["target"] = target
    t = load_tabular(name, target)
    missing = t.missing_counts()
    cells = len(t) * len(t.columns)
    cards = [len({x for x in v if x is not None}) for v, k in zip(t.values, t.kinds) if k == "categorical"]
    props = {"rows": len(t), "columns": len(t.columns), "numeric": len(t.numeric_columns),
             "categorical": len(t.categorical_columns), "max_cardinality": max(cards, default=0),
             "missing_cells": sum(missing.values()), "missing_columns": len(missing),
             "missing_percent": 100.0 * sum(missing.values()) / max(cells, 1), "target": t.target,
             "objective": t.objective, "classes": len(t.classes)}
    kinds = [f"{props['numeric']} numeric"] * bool(props["numeric"]) + \
            [f"{props['categorical']} categorical"] * bool(props["categorical"])
    props["columns_text"] = " + ".join(kinds) + (" column" if len(t.columns) == 1 else " columns")
    if t.classification:
        counts = np.bincount(t.y, minlength=len(t.classes))
        props["smallest_class_share"] = float(counts.min() / counts.sum())
        what = f"{len(t.classes)} classes of {t.target!r}, the smallest {props['smallest_class_share']:.0%} of rows"
    else:
        props["target_distinct"] = int(len(np.unique(t.y)))
        what = f"a number to predict, {t.target!r} ({props['target_distinct']:,} distinct values)"
    summary = f"{len(t):,} rows x {props['columns_text']}, {props['missing_cells']:,} missing cells; {what}"
    return props, settings, summary


def _pairs(name: str, target):
    from archlab.data import load_cmudict, load_sentence_pairs

    if name == "cmudict":
        cmu = load_cmudict(stress=True)
        sources = [w for w, _ in cmu.train]
        targets = [p[0] for _, p in cmu.train]
        unit, n = "symbols", len(cmu.train) + len(cmu.val) + len(cmu.test)
        src_vocab, tgt_vocab = len(cmu.graphemes), len(cmu.phonemes)
        settings: dict[str, Any] = {}
    else:
        pairs = load_sentence_pairs(name)
        all_pairs = pairs.train + pairs.val + pairs.test
        n = len(all_pairs)
        words = np.mean([len(s.split()) for s, _ in all_pairs])
        unit = "words" if words >= 2 else "characters"
        split = (lambda s: s.split()) if unit == "words" else list  # noqa: E731
        sources, targets = [split(s) for s, _ in all_pairs], [split(t) for _, t in all_pairs]
        src_vocab, tgt_vocab = len({x for s in sources for x in s}), len({x for t in targets for x in t})
        settings = {"tokenizer": "word" if unit == "words" else "char"}
    props = {"pairs": n, "unit": unit, "source_vocab": src_vocab, "target_vocab": tgt_vocab,
             "source_length": float(np.mean([len(s) for s in sources])),
             "target_length": float(np.mean([len(t) for t in targets]))}
    summary = (f"{n:,} pairs of sequences, {props['source_length']:.1f} -> {props['target_length']:.1f} {unit} on "
               f"average, {src_vocab:,} source and {tgt_vocab:,} target {unit}")
    return props, settings, summary


def _labels(name: str, target):
    from archlab.data import load_labelled_text

    data = load_labelled_text(name)
    examples = data.train + data.val + data.test
    words = float(np.mean([len(t.split()) for t, _ in examples]))
    counts = Counter(label for _, label in examples)
    props = {"examples": len(examples), "classes": len(data.classes), "mean_words": words,
             "mean_chars": float(np.mean([len(t) for t, _ in examples])), "unit": "words" if words >= 2 else "characters",
             "smallest_class_share": min(counts.values()) / len(examples)}
    props["mean_tokens"] = props["mean_words"] if words >= 2 else props["mean_chars"]
    settings = {"tokenizer": "word"} if words >= 2 else {}
    summary = (f"{len(examples):,} texts of {props['mean_tokens']:.1f} {props['unit']} on average in "
               f"{len(data.classes)} classes")
    return props, settings, summary


def _text(name: str, target):
    from archlab.data import load_text

    text = load_text(name)
    check(len(text) >= 1000, f"{name}: {len(text)} characters; a language model needs a longer text (1,000 "
                             "characters at least)")
    props = {"chars": len(text), "words": len(text.split()), "vocab": len(set(text)), "lines": text.count("\n") + 1}
    props["log_chars"] = math.log10(len(text))
    summary = f"{len(text):,} characters ({props['words']:,} words) of text, {props['vocab']} distinct characters"
    return props, {}, summary
