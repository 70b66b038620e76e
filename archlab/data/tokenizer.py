"""Tokenizers: text <-> integer ids, stored beside checkpoints as JSON.

Four granularities, one interface (``encode``, ``decode``, ``vocab_size``, ``to_dict`` /
``from_dict``, ``save`` / ``load``):

    CharTokenizer    one id per character (Karpathy's char-rnn; Tiny Shakespeare has 65)
    SymbolTokenizer  one id per symbol of pre-split sequences (phonemes)
    WordTokenizer    one id per word or punctuation mark; words rarer than ``min_freq`` -> <unk>
    BPETokenizer     byte-level byte-pair encoding (Sennrich et al. 2016, as in GPT-2), trained
                     with the ``tokenizers`` library: any text round-trips, no <unk> needed

Special tokens (``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``, and ``<mask>`` for masked-language-model
training, which only a tokenizer asking for it has) take the first ids, so ``<pad>`` is id 0 when
present; ``pad_id``/``bos_id``/``eos_id``/``unk_id``/``mask_id`` are ``None`` for a tokenizer without
them. ``encode(text, bos=True, eos=True)`` wraps the ids; ``decode`` drops <pad>/<bos>/<eos>/<mask>
unless told. ``fit_tokenizer(kind, texts)`` fits any of the three text tokenizers by name.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from archlab.errors import ConfigError, check
from archlab.utils.io import write_text_atomic

PAD, BOS, EOS, UNK, MASK = "<pad>", "<bos>", "<eos>", "<unk>", "<mask>"
SPECIALS = (PAD, BOS, EOS, UNK)        # the default specials
KNOWN_SPECIALS = (*SPECIALS, MASK)     # every special token a tokenizer may have
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    """What every tokenizer shares: special tokens, wrapping, JSON storage."""

    kind = ""
    specials: tuple[str, ...] = ()

    # Each tokenizer defines these four.
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def token_to_id(self, token: str) -> int | None:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    @classmethod
    def _from_dict(cls, d: dict) -> "Tokenizer":
        raise NotImplementedError

    def _special_id(self, token: str) -> int | None:
        return self.token_to_id(token) if token in self.specials else None

    pad_id = property(lambda self: self._special_id(PAD))
    bos_id = property(lambda self: self._special_id(BOS))
    eos_id = property(lambda self: self._special_id(EOS))
    unk_id = property(lambda self: self._special_id(UNK))
    mask_id = property(lambda self: self._special_id(MASK))

    @property
    def skipped_ids(self) -> set[int]:
        """What ``decode`` drops by default: <pad>, <bos>, <eos>, <mask> (an <unk> stands for a word; it stays)."""
        return {self.token_to_id(s) for s in self.specials if s != UNK}

    def _wrap(self, ids: list[int], bos: bool, eos: bool) -> list[int]:
        if not (bos or eos):
            return ids
        for flag, token, tid in ((bos, BOS, self.bos_id), (eos, EOS, self.eos_id)):
            check(not flag or tid is not None, f"{type(self).__name__}: {token} was asked for, but the "
                                               f"tokenizer's specials are {list(self.specials)}")
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def _check_ids(self, ids) -> list[int]:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        check(not bad, f"{type(self).__name__}: ids must be in [0, {self.vocab_size}), got {bad[:5]}")
        return ids

    @staticmethod
    def _check_specials(specials) -> tuple[str, ...]:
        specials = tuple(specials)
        unknown = [s for s in specials if s not in KNOWN_SPECIALS]
        check(not unknown, f"specials must be among {', '.join(KNOWN_SPECIALS)}, got {unknown}")
        return specials

    def __len__(self) -> int:
        return self.vocab_size

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        got = d.get("type") if isinstance(d, dict) else d
        check(isinstance(d, dict) and got == cls.kind,
              f"{cls.__name__}.from_dict expects a dict with type={cls.kind!r}, got type={got!r}")
        return cls._from_dict(d)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` into ``directory`` (atomically); returns its path."""
        path = Path(directory) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(self.to_dict(), ensure_ascii=False))
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        tok = load_tokenizer(directory)
        check(isinstance(tok, cls), f"{directory} holds a {type(tok).__name__}, not a {cls.__name__}")
        return tok

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, specials={list(self.specials)})"


class VocabTokenizer(Tokenizer):
    """A tokenizer over an explicit list of tokens: the specials first, then the learnt ones."""

    def __init__(self, tokens: list[str], specials: Iterable[str] = ()):
        self.specials = self._check_specials(specials)
        check(list(tokens[: len(self.specials)]) == list(self.specials),
              f"the first tokens must be the specials {list(self.specials)}, got {list(tokens[: len(self.specials)])}")
        check(len(set(tokens)) == len(tokens), "tokens must be distinct, got duplicates")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.index.get(token)

    def _lookup(self, token: str) -> int:
        i = self.index.get(token)
        if i is None:
            if UNK not in self.specials:
                raise ConfigError(
                    f"{type(self).__name__}: {token!r} is not in the vocabulary of {self.vocab_size} tokens "
                    f"and the tokenizer has no {UNK} (fit it with specials including {UNK!r})"
                )
            return self.index[UNK]
        return i

    def _tokens_of(self, ids, skip_special: bool) -> list[str]:
        skip = self.skipped_ids if skip_special else set()
        return [self.tokens[i] for i in self._check_ids(ids) if i not in skip]

    def to_dict(self) -> dict:
        return {"type": self.kind, "tokens": self.tokens, "specials": list(self.specials)}

    @classmethod
    def _from_dict(cls, d: dict) -> "VocabTokenizer":
        return cls(list(d["tokens"]), d.get("specials", ()))


class CharTokenizer(VocabTokenizer):
    """One id per character: the sorted characters of the text, after any special tokens."""

    kind = "char"

    @classmethod
    def fit(cls, text: str, specials: Iterable[str] = ()) -> "CharTokenizer":
        check(isinstance(text, str) and len(text) > 0, f"CharTokenizer.fit needs a non-empty str, got {text!r:.40}")
        specials = cls._check_specials(specials)
        return cls([*specials, *sorted(set(text) - set(specials))], specials)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self.encode_array(text)
        if ids is None:  # a character outside the vocabulary: <unk>, or an error naming it
            return self._wrap([self._lookup(ch) for ch in text], bos, eos)
        return self._wrap(ids.tolist(), bos, eos)

    def encode_array(self, text: str):
        """``encode(text)`` as a NumPy int64 array, looked up in one vectorised step (a megabyte of
        text in milliseconds); None when a character is not in the vocabulary."""
        import numpy as np

        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")  # one code point per char
        if not hasattr(self, "_table"):
            # id of each single-character token by code point, -1 for code points with none.
            singles = {ord(t): i for i, t in enumerate(self.tokens) if len(t) == 1}
            self._table = np.full(max(singles, default=-1) + 1, -1, dtype=np.int64)
            self._table[list(singles)] = list(singles.values())
        if codes.size and int(codes.max()) >= len(self._table):
            return None
        ids = self._table[codes]
        return ids if bool((ids >= 0).all()) else None

    def decode(self, ids, *, skip_special: bool = True) -> str:
        return "".join(self._tokens_of(ids, skip_special))


class SymbolTokenizer(VocabTokenizer):
    """One id per symbol of already-split sequences, e.g. ARPAbet phonemes ("T", "AH0", "M")."""

    kind = "symbols"

    @classmethod
    def fit(cls, sequences: Iterable[Sequence[str]], specials: Iterable[str] = SPECIALS) -> "SymbolTokenizer":
        specials = cls._check_specials(specials)
        symbols = sorted({s for seq in sequences for s in seq} - set(specials))
        check(len(symbols) > 0, "SymbolTokenizer.fit needs at least one symbol, got none")
        return cls([*specials, *symbols], specials)

    def encode(self, symbols: Sequence[str], *, bos: bool = False, eos: bool = False) -> list[int]:
        check(not isinstance(symbols, str),
              f"SymbolTokenizer encodes a sequence of symbols, got the str {symbols!r:.40}")
        return self._wrap([self._lookup(s) for s in symbols], bos, eos)

    def decode(self, ids, *, skip_special: bool = True) -> list[str]:
        return self._tokens_of(ids, skip_special)


WORD_PATTERN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")  # words (with an inner apostrophe) or one punctuation mark
NO_SPACE_BEFORE = re.compile(r" ([.,;:!?)\]}'])")
NO_SPACE_AFTER = re.compile(r"([(\[{]) ")


class WordTokenizer(VocabTokenizer):
    """One id per word or punctuation mark; the vocabulary is the words seen at least ``min_freq`` times.

    Words are ordered by falling frequency (ties alphabetically), so ids are reproducible.
    ``decode`` joins words with spaces and closes them up around punctuation.
    """

    kind = "word"

    def __init__(self, tokens: list[str], specials: Iterable[str] = SPECIALS, lower: bool = True):
        super().__init__(tokens, specials)
        check(UNK in self.specials, f"WordTokenizer needs {UNK} among its specials, got {list(self.specials)}")
        self.lower = bool(lower)

    def split(self, text: str) -> list[str]:
        return WORD_PATTERN.findall(text.lower() if self.lower else text)

    @classmethod
    def fit(cls, texts: str | Iterable[str], *, min_freq: int = 1, max_size: int | None = None,
            lower: bool = True, specials: Iterable[str] = SPECIALS) -> "WordTokenizer":
        check(isinstance(min_freq, int) and min_freq >= 1, f"min_freq must be an int >= 1, got {min_freq!r}")
        check(max_size is None or max_size > 0, f"max_size must be positive or None, got {max_size!r}")
        texts = [texts] if isinstance(texts, str) else texts
        specials = cls._check_specials(specials)
        probe = cls(list(specials), specials, lower)  # the same splitting rule as encode
        counts = Counter(w for text in texts for w in probe.split(text))
        words = sorted((w for w, n in counts.items() if n >= min_freq and w not in specials),
                       key=lambda w: (-counts[w], w))
        return cls([*specials, *words[:max_size]], specials, lower)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        return self._wrap([self._lookup(w) for w in self.split(text)], bos, eos)

    def decode(self, ids, *, skip_special: bool = True) -> str:
        text = " ".join(self._tokens_of(ids, skip_special))
        return NO_SPACE_AFTER.sub(r"\1", NO_SPACE_BEFORE.sub(r"\1", text))

    def to_dict(self) -> dict:
        return {**super().to_dict(), "lower": self.lower}

    @classmethod
    def _from_dict(cls, d: dict) -> "WordTokenizer":
        return cls(list(d["tokens"]), d.get("specials", SPECIALS), d.get("lower", True))


class BPETokenizer(Tokenizer):
    """Byte-level BPE: text -> UTF-8 bytes -> merges learnt from the training texts (GPT-2's scheme).

    Every string round-trips exactly, since any byte is in the base alphabet of 256 symbols.
    Trained and run by the ``tokenizers`` library; stored as its JSON inside ours.
    """

    kind = "bpe"

    def __init__(self, backend, specials: Iterable[str] = SPECIALS):
        self.backend = backend
        self.specials = self._check_specials(specials)

    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int, *, min_frequency: int = 2,
              specials: Iterable[str] = SPECIALS) -> "BPETokenizer":
        from tokenizers import Tokenizer as Backend, decoders, models, pre_tokenizers, trainers

        specials = cls._check_specials(specials)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        smallest = len(alphabet) + len(specials)
        check(isinstance(vocab_size, int) and vocab_size >= smallest,
              f"vocab_size must be an int >= {smallest} (256 bytes + {len(specials)} specials), got {vocab_size!r}")
        backend = Backend(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                      special_tokens=list(specials), initial_alphabet=alphabet)
        backend.train_from_iterator([texts] if isinstance(texts, str) else texts, trainer=trainer)
        return cls(backend, specials)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        return self._wrap(self.backend.encode(text, add_special_tokens=False).ids, bos, eos)

    def decode(self, ids, *, skip_special: bool = True) -> str:
        skip = self.skipped_ids if skip_special else set()
        return self.backend.decode([i for i in self._check_ids(ids) if i not in skip], skip_special_tokens=False)

    def to_dict(self) -> dict:
        return {"type": self.kind, "specials": list(self.specials), "backend": json.loads(self.backend.to_str())}

    @classmethod
    def _from_dict(cls, d: dict) -> "BPETokenizer":
        from tokenizers import Tokenizer as Backend

        return cls(Backend.from_str(json.dumps(d["backend"])), d.get("specials", SPECIALS))


TOKENIZERS: dict[str, type[Tokenizer]] = {
    "char": CharTokenizer, "symbols": SymbolTokenizer, "word": WordTokenizer, "bpe": BPETokenizer,
}


TEXT_TOKENIZERS = ("char", "word", "bpe")


def fit_tokenizer(kind: str, texts: str | Iterable[str], *, specials: Iterable[str] = SPECIALS,
                  bpe_vocab_size: int = 1000, min_freq: int = 1) -> Tokenizer:
    """A text tokenizer of ``kind`` ("char" | "word" | "bpe") fitted on ``texts``.

    ``min_freq`` is the word tokenizer's threshold, ``bpe_vocab_size`` the size BPE trains up to.
    """
    check(kind in TEXT_TOKENIZERS, f"tokenizer must be one of {', '.join(TEXT_TOKENIZERS)}, got {kind!r}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    if kind == "char":
        return CharTokenizer.fit("".join(texts), specials=specials)
    if kind == "word":
        return WordTokenizer.fit(texts, min_freq=min_freq, specials=specials)
    return BPETokenizer.train(texts, bpe_vocab_size, specials=specials)


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild whichever tokenizer ``to_dict`` stored."""
    check(isinstance(d, dict), f"a tokenizer is stored as a JSON object with a type, got a {type(d).__name__}")
    kind = d.get("type")
    check(kind in TOKENIZERS, f"tokenizer type must be one of {', '.join(TOKENIZERS)}, got {kind!r}")
    try:
        return TOKENIZERS[kind].from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"a stored {kind} tokenizer is damaged ({type(e).__name__}: {e})") from None


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """Read the ``tokenizer.json`` that ``save`` wrote into ``directory`` -- or a Hugging Face
    GPT-2 tokenizer there (the ``tokenizers`` library's ``tokenizer.json``, or ``vocab.json`` +
    ``merges.txt``), as a byte-level ``BPETokenizer`` without archlab's special tokens."""
    directory = Path(directory)
    path = directory / TOKENIZER_FILE
    if not path.is_file() and (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return _hf_bpe_from_files(directory)
    check(path.is_file(), f"no {TOKENIZER_FILE} in {str(directory)!r}")
    try:
        text = path.read_text(encoding="utf-8")
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason}); a binary file?") from None
    if isinstance(d, dict) and "type" not in d and "model" in d:  # the tokenizers library's own file
        from tokenizers import Tokenizer as Backend

        try:
            return BPETokenizer(Backend.from_str(text), specials=())
        except Exception as e:
            raise ConfigError(f"{path}: not a tokenizer the tokenizers library can read ({e})") from None
    try:
        return tokenizer_from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _hf_bpe_from_files(directory: Path) -> BPETokenizer:
    """GPT-2's byte-level BPE from ``vocab.json`` and ``merges.txt``."""
    from tokenizers import Tokenizer as Backend, decoders, models, pre_tokenizers

    try:
        backend = Backend(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
    except Exception as e:
        raise ConfigError(f"{directory}: vocab.json and merges.txt are not a BPE vocabulary ({e})") from None
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return BPETokenizer(backend, specials=())
