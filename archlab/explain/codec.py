"""Text <-> token ids for a page: what a model can read, and how each token is shown.

One small interface over the three places a model's vocabulary comes from:

    ArchlabCodec   the tokenizer a run saved (``tokenizer.json`` of ``archlab train``, or a seq2seq
                   task's symbol tables)
    HFCodec        a Hugging Face folder's ``tokenizer.json`` (the ``tokenizers`` library), e.g.
                   MiniLM's WordPiece with its [CLS] ... [SEP] around every text
    ByteCodec      a registry model with random weights and a vocabulary of at least 256: the text's
                   UTF-8 bytes (GPT's default vocabulary is exactly that)

``encode`` refuses, with one line naming them, characters the vocabulary cannot hold (a character
tokenizer that never saw them, a WordPiece vocabulary that would turn them into [UNK]); ``show``
gives a token as text for an axis label, with blanks made visible (space, newline, tab).
"""

from __future__ import annotations

from pathlib import Path

from archlab.errors import ConfigError, check

VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def visible(text: str) -> str:
    return "".join(VISIBLE.get(ch, ch) for ch in text) if text else "∅"


class Codec:
    name = ""
    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    mask_id: int | None = None

    def encode(self, text: str, what: str = "--input") -> list[int]:
        raise NotImplementedError

    def show(self, token_id: int) -> str:
        raise NotImplementedError

    def shows(self, ids) -> list[str]:
        return [self.show(int(i)) for i in ids]

    def decode(self, ids) -> str:
        return "".join(self.shows(ids))


class ArchlabCodec(Codec):
    """An ``archlab.data`` tokenizer (characters, symbols, words or byte-level BPE)."""

    def __init__(self, tokenizer, name: str = "the model's tokenizer"):
        self.tok, self.name = tokenizer, name
        self.pad_id, self.bos_id, self.eos_id = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
        self.mask_id = tokenizer.mask_id

    def encode(self, text: str, what: str = "--input") -> list[int]:
        from archlab.data import CharTokenizer

        if isinstance(self.tok, CharTokenizer):
            known = set(self.tok.tokens) - set(self.tok.specials)
            unknown = sorted(set(text) - known)
            if unknown:
                shown = "".join(sorted(known))
                raise ConfigError(f"{what} has characters the model was not trained on: "
                                  f"{', '.join(repr(c) for c in unknown)}; it knows the {len(known)} characters "
                                  f"{shown[:80]!r}{'...' if len(shown) > 80 else ''}")
        try:
            return list(self.tok.encode(text))
        except ConfigError as e:
            raise ConfigError(f"{what} {text[:40]!r} cannot be encoded by the model's tokenizer: {e}") from e

    def show(self, token_id: int) -> str:
        tokens = getattr(self.tok, "tokens", None)
        if tokens is not None:
            return visible(tokens[token_id])
        return visible(self.tok.decode([token_id], skip_special=False))


class HFCodec(Codec):
    """A Hugging Face ``tokenizer.json`` (WordPiece for BERT, byte-level BPE for GPT-2)."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        check(path.is_file(), f"{path.parent} has no tokenizer.json, so no text can be turned into its token ids; "
                              "add the tokenizer the model was trained with")
        try:
            self.tok = Tokenizer.from_file(str(path))
        except Exception as e:  # the library's own error types
            raise ConfigError(f"{path} is not a tokenizer the tokenizers library reads: {e}") from e
        self.tok.no_padding()
        self.tok.no_truncation()  # a text longer than the model reads is refused by the page, never cut silently
        self.name = f"{path.parent.name}/tokenizer.json"
        ids = {t: self.tok.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "<unk>")}
        self.pad_id, self.bos_id, self.eos_id = ids["[PAD]"], ids["[CLS]"], ids["[SEP]"]
        self.mask_id = ids["[MASK]"]
        self.unk_id = ids["[UNK]"] if ids["[UNK]"] is not None else ids["<unk>"]

    def encode(self, text: str, what: str = "--input") -> list[int]:
        enc = self.tok.encode(text)
        if self.unk_id is not None and self.unk_id in enc.ids:
            bad = sorted({text[a:b] for i, (a, b) in zip(enc.ids, enc.offsets) if i == self.unk_id and b > a})
            raise ConfigError(f"{what} has text the model's vocabulary cannot hold (it would read [UNK]): "
                              f"{', '.join(repr(w) for w in bad) or repr(text[:40])}")
        return list(enc.ids)

    def show(self, token_id: int) -> str:
        token = self.tok.id_to_token(token_id) or f"#{token_id}"
        return visible(token.replace("Ġ", " ").replace("Ċ", "\n"))  # GPT-2's byte-level marks for space and newline


class ByteCodec(Codec):
    """UTF-8 bytes as token ids 0..255 (a registry model of random weights has no tokenizer); id 256, when
    the vocabulary has it, stands for the mask of a masked language model."""

    name = "UTF-8 bytes"

    def __init__(self, vocab_size: int = 256):
        self.mask_id = 256 if vocab_size > 256 else None

    def encode(self, text: str, what: str = "--input") -> list[int]:
        return list(text.encode("utf-8"))

    def show(self, token_id: int) -> str:
        if token_id == self.mask_id:
            return "<mask>"
        if token_id < 128 and (chr(token_id).isprintable() or chr(token_id) in VISIBLE):
            return visible(chr(token_id))
        return f"\\x{token_id:02x}" if token_id < 256 else f"#{token_id}"


class IdCodec(Codec):
    """Token ids shown as numbers; no text can be encoded."""

    name = "token ids"

    def encode(self, text: str, what: str = "--input") -> list[int]:
        raise ConfigError(f"{what}: the model has no tokenizer (no tokenizer.json beside its weights, or a registry "
                          "model whose vocabulary is smaller than 256 bytes), so no text can be turned into its ids")

    def show(self, token_id: int) -> str:
        return f"#{token_id}"
