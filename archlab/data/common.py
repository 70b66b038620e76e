"""Pieces every loader shares: seeded stratified splits and errors for unknown names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import numpy as np

from archlab.data.catalog import DATASETS
from archlab.errors import ConfigError

SEED = 0  # every fixed split of archlab's data sets is drawn with this seed


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled ``(train_idx, test_idx)`` holding out ``round(test_fraction * n_c)`` of each class c.

    Each class keeps its share in both parts, so a split of sorted data is balanced as well.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    # Interleave the classes: a sorted order would hand a trainer one class at a time.
    train_idx, test_idx = np.concatenate(train), np.concatenate(test)
    return rng.permutation(train_idx), rng.permutation(test_idx)


def unknown_name(kind: str, given: str, known: Iterable[str], extra: str = "") -> ConfigError:
    """``ConfigError`` listing the known names, with a "did you mean" for a near miss."""
    known = sorted(known)
    other = DATASETS.get(given)
    if other is not None:  # a real data set, asked of the wrong loader
        article = "an" if other.kind[0] in "aeiou" else "a"
        hint = f"; {given!r} is {article} {other.kind} data set: load it with archlab.data.{other.loader}"
    else:
        close = difflib.get_close_matches(given.lower(), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown {kind} {given!r}: expected one of {', '.join(known)}{extra}{hint}")
