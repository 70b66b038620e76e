"""Tokenizers: text <-> integer ids, stored beside checkpoints as JSON.

Three granularities, one interface (``encode``, ``decode``, ``vocab_size``, ``to_dict`` /
``from_dict``, ``save`` / ``load``):

    CharTokenizer  one id per character (Karpathy's char-rnn; Tiny Shakespeare has 65)
    WordTokenizer  one id per word or punctuation mark, rare words -> <unk>
    BPETokenizer   byte-level byte-pair encoding (Sennrich et al. 2016; GPT-2), trained with the
                   ``tokenizers`` library

Special tokens (``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``) come first, so ``<pad>`` is id 0 when
present; ``pad_id``/``bos_id``/``eos_id``/``unk_id`` are ``None`` for a tokenizer without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from archlab.errors import ConfigError, check
from archlab.utils.io import write_text_atomic

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    """Shared behaviour: a token list whose first entries are the special tokens."""

    kind = ""

    def __init__(self, tokens: list[str], specials: tuple[str, ...] = ()):
        unknown = [s for s in specials if s not in SPECIALS]
        check(not unknown, f"specials must be among {', '.join(SPECIALS)}, got {unknown}")
        check(list(tokens[: len(specials)]) == list(specials),
              f"the first tokens must be the specials {list(specials)}, got {list(tokens[: len(specials)])}")
        check(len(set(tokens)) == len(tokens), "tokens must be distinct, got duplicates")
        self.tokens = list(tokens)
        self.specials = tuple(specials)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def _special_id(self, token: str) -> int | None:
        return self.index[token] if token in self.specials else None

    pad_id = property(lambda self: self._special_id(PAD))
    bos_id = property(lambda self: self._special_id(BOS))
    eos_id = property(lambda self: self._special_id(EOS))
    unk_id = property(lambda self: self._special_id(UNK))

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

    def _check_ids(self, ids) -> list[int]:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        check(not bad, f"{type(self).__name__}: ids must be in [0, {self.vocab_size}), got {bad[:5]}")
        return ids

    def __len__(self) -> int:
        return self.vocab_size

    # Stored beside checkpoints.
    def to_dict(self) -> dict:
        return {"type": self.kind, "tokens": self.tokens, "specials": list(self.specials)}

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        check(isinstance(d, dict) and d.get("type") == cls.kind,
              f"{cls.__name__}.from_dict expects a dict with type={cls.kind!r}, got type={d.get('type') if isinstance(d, dict) else d!r}")
        return cls(list(d["tokens"]), tuple(d.get("specials", ())))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` into ``directory`` (atomically); returns its path."""
        path = Path(directory) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(self.to_dict(), ensure_ascii=False))
        return path

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, specials={list(self.specials)})"


class CharTokenizer(Tokenizer):
    """One id per character: the sorted characters of the text, after any special tokens."""

    kind = "char"

    @classmethod
    def fit(cls, text: str, specials: tuple[str, ...] | list[str] = ()) -> "CharTokenizer":
        check(isinstance(text, str) and len(text) > 0, f"CharTokenizer.fit needs a non-empty str, got {text!r:.40}")
        return cls([*specials, *sorted(set(text))], tuple(specials))

    def encode(self, text: str) -> list[int]:
        return [self._lookup(ch) for ch in text]

    def decode(self, ids) -> str:
        return "".join(self.tokens[i] for i in self._check_ids(ids))


TOKENIZERS: dict[str, type[Tokenizer]] = {"char": CharTokenizer}


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild whichever tokenizer ``to_dict`` stored."""
    kind = d.get("type") if isinstance(d, dict) else None
    check(kind in TOKENIZERS, f"tokenizer type must be one of {', '.join(TOKENIZERS)}, got {kind!r}")
    return TOKENIZERS[kind].from_dict(d)


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """Read the ``tokenizer.json`` that ``save`` wrote into ``directory``."""
    path = Path(directory) / TOKENIZER_FILE
    check(path.is_file(), f"no {TOKENIZER_FILE} in {str(directory)!r}")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from e
    return tokenizer_from_dict(d)
