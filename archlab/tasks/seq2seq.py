"""Sequence to sequence: a source sequence in, a target sequence out (G2P, translation).

Two kinds of data:

    "cmudict" (default)  grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary,
                         "tomato" -> T AH0 M EY1 T OW2 (``archlab.data.pronunciation``: the fixed
                         12,000-word test split; letters in, ARPAbet phonemes out)
    a TSV path           ``source<TAB>target`` sentence pairs (``archlab.data.text``), split
                         80 / 10 / 10, each side tokenized by words, characters or BPE

Any ``Seq2SeqModel`` (``transformer``, ``t5`` / ``t5_small`` / ``t5_base``, ``seq2seq_rnn``) trains
here: its ``token_losses`` reads the source x and the decoder input [bos] + y, and teacher forcing
scores every position on the next target token of y + [eos]:

    L = -1/N * sum_i sum_t log p(y_{i,t} | y_{i,<t}, x_i)        N = the scored tokens (eos included)

With label smoothing eps the one-hot target becomes (1 - eps) * onehot(y) + eps / V.

Metrics on a held-out split -- ``val`` during training (G2P: the dictionary's fixed 3,000
validation words, none of them trained on; TSV: the validation pairs), ``test`` once at the end
(G2P: the 12,000 test words) -- from batched greedy decoding (``model.translate``, KV cache for the
Transformer, stopping once every row has written eos):

    G2P   wer, per              word / phoneme error rate as fractions, against the closest of a
                                word's pronunciations, stress digits kept when the task keeps them
          wer_nostress, ...     the same with the digits stripped from prediction and references
    TSV   bleu                  sacrebleu corpus BLEU (0-100) of the detokenised translations
    both  loss                  teacher-forced loss per target token, without smoothing (G2P: on
                                each word's first pronunciation)
          eval_count            how many test examples the figures were computed on

Every metric is a ratio of sums over test examples (edit distances, reference lengths, wrong
words; BLEU's n-gram matches, totals and lengths), so batches and processes add up exactly.

Training: every epoch visits each training pair once (G2P: every pronunciation of every word, or
only the first), in an order drawn from ``(seed, epoch)``. That order is cut into windows of
``bucket_batches`` batches, each window sorted by source then target length and cut into
batches, and the batches shuffled: a batch holds pairs of similar lengths and pads little (on
CMUdict 10% of the tokens of a batch of 128 are padding, against 51% in random batches). Rows pad
to the batch's longest.

The source and target tokenizers and ``max_len`` are saved beside the checkpoint as
``seq2seq.json`` and reused when a checkpoint is evaluated or used by ``archlab translate``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from archlab.checkpoint import unwrap
from archlab.data.pronunciation import closest_reference, strip_stress
from archlab.data.tokenizer import BOS, EOS, PAD, Tokenizer, tokenizer_from_dict
from archlab.errors import ConfigError, check
from archlab.models.interfaces import PairData, Seq2SeqModel
from archlab.tasks.base import SPLITS, Batch, Task, count_from_sums, generator_for, register_task
from archlab.utils.io import write_text_atomic

SYMBOLS_FILE = "seq2seq.json"
TOKENIZERS = ("word", "char", "bpe")
G2P_DATA = "cmudict"
G2P_SUMS = ("loss_sum", "count", "words", "edits", "ref_phonemes", "wrong",
            "edits_nostress", "ref_phonemes_nostress", "wrong_nostress")
BLEU_SUMS = ("loss_sum", "count", "sentences", "sys_len", "ref_len",
             *(f"correct_{n}" for n in range(1, 5)), *(f"total_{n}" for n in range(1, 5)))


@dataclass
class Seq2SeqConfig:
    stress: bool = True              # G2P: keep the stress digits (AH0, EY1) in the targets
    all_pronunciations: bool = True  # G2P: train on every pronunciation of a word, not only its first
    tokenizer: str = "word"          # TSV: "word" | "char" | "bpe", one fitted per side on the training pairs
    max_vocab: int = 8000            # TSV: the most frequent words kept (word) / the vocabulary size (bpe)
    max_len: int = 0                 # longest source or target in tokens (longer training pairs are dropped,
                                     # test sides cut); 0 = the longest in the data (G2P: in the dictionary)
    label_smoothing: float = 0.0     # eps of the training loss
    train_words: int = 0             # training examples (words or pairs) used: 0 = all, N > 0 = the first N
    eval_words: int = 0              # test examples evaluated: 0 = all of them, N > 0 = the first N
    val_words: int = 0               # validation examples evaluated: 0 = all of them, N > 0 = the first N
    bucket_batches: int = 32         # batches per length-sorted window; 1 = plain random batches
    beam_size: int = 1               # the evaluation's decoding: 1 = greedy, N > 1 = beam search of width N

    def __post_init__(self):
        check(self.tokenizer in TOKENIZERS, f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        check(self.max_vocab > 0, f"max_vocab must be positive, got {self.max_vocab}")
        check(self.max_len >= 0, f"max_len must be >= 0 (0 = the longest in the data), got {self.max_len}")
        check(0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        check(self.train_words >= 0, f"train_words must be >= 0 (0 = the whole training split), got {self.train_words}")
        check(self.eval_words >= 0, f"eval_words must be >= 0 (0 = the whole test split), got {self.eval_words}")
        check(self.val_words >= 0, f"val_words must be >= 0 (0 = the whole validation split), got {self.val_words}")
        check(self.bucket_batches >= 1, f"bucket_batches must be >= 1, got {self.bucket_batches}")
        check(self.beam_size >= 1, f"beam_size must be >= 1 (1 = greedy decoding), got {self.beam_size}")


def _padded(seqs: list[list[int]], pad_id: int) -> torch.Tensor:
    """Right-padded (N, longest) ids."""
    longest = max(map(len, seqs), default=0)
    return torch.tensor([s + [pad_id] * (longest - len(s)) for s in seqs], dtype=torch.long).view(len(seqs), longest)


def _trim(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the columns that are padding in every row."""
    longest = int((ids != pad_id).sum(1).max()) if ids.numel() else 0
    return ids[:, :max(longest, 1)]


@register_task
class Seq2SeqTask(Task):
    name = "seq2seq"
    Config = Seq2SeqConfig
    requires = Seq2SeqModel
    default_data = G2P_DATA
    metric_modes = {"loss": "min", "wer": "min", "per": "min", "wer_nostress": "min", "per_nostress": "min",
                    "bleu": "max"}
    saved_files = (SYMBOLS_FILE,)

    def __init__(self, config: Seq2SeqConfig, data: str | None = None, saved: Path | None = None):
        super().__init__(config, data, saved)
        self.g2p = self.data == G2P_DATA
        self.sum_keys = G2P_SUMS if self.g2p else BLEU_SUMS
        # Examples as text: training (source, target); validation and test (source, references).
        train, self.val, self.test = self._g2p_examples() if self.g2p else self._tsv_examples()
        check(len(train) > 0, f"--data {self.data!r} has no training pairs")
        check(len(self.test) > 0, f"--data {self.data!r} has no test pairs")
        if self.config.eval_words:
            self.test = self.test[: self.config.eval_words]
        if self.config.val_words:
            self.val = self.val[: self.config.val_words]

        stored = self._read_saved(saved)
        if stored is not None:
            self.source, self.target, fixed_len = stored
        else:
            self.source, self.target = self._fit_tokenizers(train)
            fixed_len = config.max_len
        for name in ("pad_id", "bos_id", "eos_id"):
            check(getattr(self.source, name) == getattr(self.target, name),
                  f"the source and target tokenizers must share {name}, got {getattr(self.source, name)} "
                  f"and {getattr(self.target, name)}")

        self._train_text, self._train = train, None
        held_ids = {split: [(self.source.encode(s), self.target.encode(refs[0])) for s, refs in self.held(split)]
                    for split in SPLITS}
        if stored is None:  # encoded now, so that bad settings fail before a run starts
            train_ids = self._encode_training_pairs()
            self.max_len = fixed_len or self._longest or max(
                len(x) for pair in train_ids + held_ids["val"] + held_ids["test"] for x in pair)
            self._train = self._training_tensors(train_ids)
        else:  # evaluating or translating: the training pairs are encoded only if asked for
            self.max_len = fixed_len
        L, pad = self.max_len, self.pad_id
        # Padded (source (N, S), first reference (N, T)) ids of each held-out split.
        self._held_ids = {split: (_padded([s[:L] for s, _ in ids], pad), _padded([t[:L] for _, t in ids], pad))
                          for split, ids in held_ids.items()}
        self.test_src, self.test_tgt = self._held_ids["test"]
        self._order: tuple[tuple[int, int, int], torch.Tensor] | None = None   # ((seed, epoch, B), batches)
        if self.g2p:
            self._refs = {split: [[tuple(r) for r in refs] for _, refs in self.held(split)] for split in SPLITS}
            self._refs_nostress = {split: [[strip_stress(r) for r in refs] for refs in self._refs[split]]
                                   for split in SPLITS}
            self.refs, self.refs_nostress = self._refs["test"], self._refs_nostress["test"]
        else:
            from sacrebleu.metrics import BLEU

            self._bleu = BLEU(effective_order=True)  # per-sentence statistics; the score comes from their sums

    # -- data ----------------------------------------------------------------------------------
    def _g2p_examples(self):
        from archlab.data import load_cmudict

        cmu = load_cmudict(stress=self.config.stress)
        self._alphabet, self._phonemes = cmu.graphemes, cmu.phonemes
        # The longest word or pronunciation of the whole dictionary, however few words are used.
        self._longest = max(max(len(w), *map(len, prons)) for w, prons in cmu.lexicon.items())
        words = cmu.train[: self.config.train_words or None]
        train = cmu.pairs(words, self.config.all_pronunciations)
        return (train, [(word, list(prons)) for word, prons in cmu.val],
                [(word, list(prons)) for word, prons in cmu.test])

    def _tsv_examples(self):
        from archlab.data import load_sentence_pairs

        check(Path(self.data).is_file(), f"--data for task 'seq2seq' must be {G2P_DATA!r} or the path of a TSV "
                                         f"file of source<TAB>target lines, got {self.data!r}")
        pairs = load_sentence_pairs(self.data)
        self._longest = 0  # known once tokenized
        return (pairs.train[: self.config.train_words or None], [(s, [t]) for s, t in pairs.val],
                [(s, [t]) for s, t in pairs.test])

    def _fit_tokenizers(self, train) -> tuple[Tokenizer, Tokenizer]:
        from archlab.data import BPETokenizer, CharTokenizer, SymbolTokenizer, WordTokenizer
        from archlab.data.tokenizer import SPECIALS

        if self.g2p:  # no <unk>: a letter outside the alphabet is an error, not a guess
            return (CharTokenizer.fit("".join(self._alphabet), specials=(PAD, BOS, EOS)),
                    SymbolTokenizer.fit([self._phonemes], specials=(PAD, BOS, EOS)))
        c = self.config
        sides = [s for s, _ in train], [t for _, t in train]
        if c.tokenizer == "word":  # case kept, so that translations can match the references
            return tuple(WordTokenizer.fit(texts, max_size=c.max_vocab, lower=False) for texts in sides)
        if c.tokenizer == "char":
            return tuple(CharTokenizer.fit("".join(texts), specials=SPECIALS) for texts in sides)
        return tuple(BPETokenizer.train(texts, c.max_vocab) for texts in sides)

    def _read_saved(self, saved: Path | None):
        if saved is None or not (Path(saved) / SYMBOLS_FILE).is_file():
            return None
        stored = json.loads((Path(saved) / SYMBOLS_FILE).read_text(encoding="utf-8"))
        kind = "g2p" if self.g2p else "pairs"
        check(stored["kind"] == kind,
              f"--data {self.data!r} is {'the CMU dictionary' if self.g2p else 'a file of sentence pairs'}, "
              f"the checkpoint was trained on {'the CMU dictionary' if stored['kind'] == 'g2p' else 'sentence pairs'}")
        return tokenizer_from_dict(stored["source"]), tokenizer_from_dict(stored["target"]), int(stored["max_len"])

    def _encode_training_pairs(self) -> list[tuple[list[int], list[int]]]:
        return [(self.source.encode(s), self.target.encode(t)) for s, t in self._train_text]

    def _training_tensors(self, train_ids) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded source (N, S) and target (N, T) ids of the pairs that fit max_len, and bucketing keys (N,)."""
        L, pad = self.max_len, self.pad_id
        train_ids = [(s, t) for s, t in train_ids if 0 < len(s) <= L and 0 < len(t) <= L]
        check(len(train_ids) > 0, f"--data {self.data!r}: no training pair fits max_len={L}")
        src = _padded([s for s, _ in train_ids], pad)  # (N, S)
        tgt = _padded([t for _, t in train_ids], pad)  # (N, T)
        key = (src != pad).sum(1) * (L + 1) + (tgt != pad).sum(1)  # (N,): by source, then target length
        return src, tgt, key

    @property
    def training_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._train is None:
            self._train = self._training_tensors(self._encode_training_pairs())
        return self._train

    @property
    def pad_id(self) -> int:
        return self.source.pad_id

    @property
    def decode_len(self) -> int:
        """The most tokens ``translate`` writes: a target of max_len, then eos."""
        return self.max_len + 1

    # -- what the data fixes -------------------------------------------------------------------
    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        data = PairData(self.source.vocab_size, self.target.vocab_size, self.source.pad_id, self.source.bos_id,
                        self.source.eos_id, self.max_len)
        return model_class.seq2seq_fields(data, config)

    @property
    def num_train_samples(self) -> int:
        return len(self.training_tensors[0])

    # -- batches -------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int, batch_size: int, seed: int) -> torch.Tensor:
        """(batches per epoch, batch_size) row indices of one epoch, bucketed by length."""
        key = (seed, epoch, batch_size)
        if self._order is None or self._order[0] != key:
            lengths = self.training_tensors[2]
            n = len(lengths)
            per_epoch = n // batch_size
            g = generator_for(seed, epoch)
            order = torch.randperm(n, generator=g)[: per_epoch * batch_size]
            # Sort each window of bucket_batches batches by length: window first, lengths second.
            window = torch.arange(len(order)) // (self.config.bucket_batches * batch_size)
            longest = int(lengths.max()) + 1
            order = order[torch.argsort(window * longest + lengths[order], stable=True)]
            batches = order.view(per_epoch, batch_size)
            self._order = (key, batches[torch.randperm(per_epoch, generator=g)])
        return self._order[1]

    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        src, tgt, _ = self.training_tensors
        check(batch_size <= len(src), f"batch_size={batch_size} is larger than the {len(src)} training pairs")
        epoch, i = divmod(position, len(src) // batch_size)
        idx = self._epoch_batches(epoch, batch_size, seed)[i][shard]
        return _trim(src[idx], self.pad_id), _trim(tgt[idx], self.pad_id)

    def held(self, split: str) -> list:
        """The (source, references) examples of a held-out split."""
        return self.val if split == "val" else self.test

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return SPLITS if self.val else ("test",)

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        """(source, first reference, example indices, split code) batches of a held-out split."""
        self.check_split(split)
        src, tgt = self._held_ids[split]
        code = torch.tensor(SPLITS.index(split))
        # Words of similar length together: a decoding batch stops when its longest row is done.
        order = torch.argsort((src != self.pad_id).sum(1), stable=True)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            yield _trim(src[idx], self.pad_id), _trim(tgt[idx], self.pad_id), idx, code

    # -- loss and metrics ----------------------------------------------------------------------
    def step(self, model, batch):
        """The teacher-forced training loss, with label smoothing."""
        src, tgt = batch
        token_loss, n_tokens = model.token_losses(src, tgt, label_smoothing=self.config.label_smoothing)
        return token_loss.sum() / n_tokens

    def evaluate_batch(self, model, batch):
        """Teacher-forced loss without smoothing, then every row decoded (greedy, or a beam of
        ``beam_size``) and scored."""
        src, tgt, index, code = batch
        token_loss, n_tokens = model.token_losses(src, tgt)
        sums = {"loss_sum": token_loss.sum().double(), "count": n_tokens.double()}
        predictions = self._decode(model, src, self.config.beam_size)
        sums.update(self.error_sums(predictions, index.tolist(), SPLITS[int(code)]))
        return sums

    def _decode(self, model, src: torch.Tensor, beam_size: int = 1) -> list:
        """Each row's predicted target: a list of phonemes (G2P) or a detokenised string."""
        out = unwrap(model).translate(src, max_len=self.decode_len, beam_size=beam_size)  # (B, L)
        eos = self.target.eos_id
        rows = []
        for row in out.tolist():
            rows.append(self.target.decode(row[: row.index(eos)] if eos in row else row))
        return rows

    def error_sums(self, predictions: list, index: list[int], split: str = "test") -> dict[str, float]:
        """The metric sums of predictions for the examples ``index`` (positions in ``self.held(split)``)."""
        if self.g2p:
            s = dict.fromkeys(G2P_SUMS[2:], 0)
            refs_of, nostress_of = self._refs[split], self._refs_nostress[split]
            for pred, i in zip(predictions, index):
                s["words"] += 1
                for suffix, p, refs in (("", pred, refs_of[i]), ("_nostress", strip_stress(pred), nostress_of[i])):
                    dist, length = closest_reference(p, refs)
                    s["edits" + suffix] += dist
                    s["ref_phonemes" + suffix] += length
                    s["wrong" + suffix] += dist > 0
            return {k: float(v) for k, v in s.items()}
        s = dict.fromkeys(BLEU_SUMS[2:], 0)
        for hyp, i in zip(predictions, index):
            stats = self._bleu.sentence_score(hyp, self.held(split)[i][1])
            s["sentences"] += 1
            s["sys_len"] += stats.sys_len
            s["ref_len"] += stats.ref_len
            for n in range(4):
                s[f"correct_{n + 1}"] += stats.counts[n]
                s[f"total_{n + 1}"] += stats.totals[n]
        return {k: float(v) for k, v in s.items()}

    def metrics(self, sums):
        loss = sums["loss_sum"] / count_from_sums(sums)
        if self.g2p:
            words = count_from_sums(sums, "words")
            return {"loss": loss, "wer": sums["wrong"] / words, "per": sums["edits"] / sums["ref_phonemes"],
                    "wer_nostress": sums["wrong_nostress"] / words,
                    "per_nostress": sums["edits_nostress"] / sums["ref_phonemes_nostress"], "eval_count": words}
        from sacrebleu.metrics import BLEU

        sentences = count_from_sums(sums, "sentences")
        bleu = BLEU.compute_bleu([int(sums[f"correct_{n}"]) for n in range(1, 5)],
                                 [int(sums[f"total_{n}"]) for n in range(1, 5)],
                                 int(sums["sys_len"]), int(sums["ref_len"]), smooth_method=BLEU().smooth_method)
        return {"loss": loss, "bleu": bleu.score, "eval_count": sentences}

    # -- translating new inputs ----------------------------------------------------------------
    def encode_source(self, text: str) -> list[int]:
        """Source ids of one input; a character the model cannot read is a ``ConfigError`` naming it."""
        text = text.strip()
        if self.g2p:
            text = text.lower()  # the dictionary is lower case
            known = set(self._source_alphabet())
            unknown = [ch for ch in text if ch not in known]
            if unknown:
                raise ConfigError(f"{text!r}: the character {unknown[0]!r} is not in the model's source "
                                  f"alphabet ({''.join(self._source_alphabet())})")
        check(len(text) > 0, "an input to translate must not be empty")
        ids = self.source.encode(text)
        check(len(ids) <= self.max_len,
              f"{text[:40]!r} has {len(ids)} source tokens, the model was trained with max_len={self.max_len}")
        return ids

    def _source_alphabet(self) -> list[str]:
        return [t for t in self.source.tokens if t not in self.source.specials]

    def format_target(self, prediction) -> str:
        return " ".join(prediction) if self.g2p else prediction

    def translate(self, model, texts: list[str], *, beam_size: int = 1, batch_size: int = 256) -> list[str]:
        """The model's output for each input text: phonemes joined by spaces (G2P), or a sentence."""
        check(batch_size > 0, f"batch_size must be positive, got {batch_size}")
        ids = [self.encode_source(t) for t in texts]  # every input checked before any decoding
        device = next(unwrap(model).parameters()).device
        out: list[str] = []
        with torch.no_grad():
            for i in range(0, len(ids), batch_size):
                src = _padded(ids[i:i + batch_size], self.pad_id).to(device)
                out += [self.format_target(p) for p in self._decode(model, src, beam_size)]
        return out

    def sample_predictions(self, model, n: int = 10, *, beam_size: int = 1) -> list[tuple[str, str, list[str]]]:
        """(source, prediction, references) of the first ``n`` test examples, for reports."""
        chosen = self.test[:n]
        predicted = self.translate(model, [s for s, _ in chosen], beam_size=beam_size)
        return [(s, p, [self.format_target(r) for r in refs]) for (s, refs), p in zip(chosen, predicted)]

    # -- what travels with a checkpoint --------------------------------------------------------
    def save(self, directory: Path) -> None:
        stored = {"kind": "g2p" if self.g2p else "pairs", "max_len": self.max_len,
                  "source": self.source.to_dict(), "target": self.target.to_dict()}
        write_text_atomic(Path(directory) / SYMBOLS_FILE, json.dumps(stored, ensure_ascii=False) + "\n")

