"""Text classification: a text in, one of K labels out.

A text becomes token ids x_1..x_T behind a ``<bos>`` token x_0 (the [CLS] position BERT pools);
the model maps them to logits z (K,); the loss is the cross-entropy ``L = -log softmax(z)_y``
averaged over the batch. Metrics on a held-out split (validation during training, test at the end):

    loss       mean cross-entropy (nats)
    accuracy   mean(argmax z == y)
    macro_f1   (1/K') sum_k F1_k,  F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k) = 2 TP_k / (predicted_k + true_k),
               over the K' classes that occur among the references or the predictions

Data: ``"cmudict-syllables"`` (the default, offline: an English word -> its number of syllables)
or a ``text<TAB>label`` file, split train / validation / test (``archlab.data.load_labelled_text``).
The tokenizer (``tokenizer`` = "char" by default for words, "word" or "bpe" for sentences) is fitted
on the training texts; unseen tokens become ``<unk>``. It is saved beside the checkpoint as
``tokenizer.json`` and the class names as ``labels.json``; both are reused when evaluating.

A batch is ``(ids (B, T), mask (B, T), labels (B,))``, right-padded with ``<pad>`` to its longest
text; ``mask`` is True on real tokens. Any ``TokenClassifier`` trains here: it gets both through
``token_logits(ids, mask)`` (``bert`` masks padded keys out; ``rnn_classifier`` never lets padded
steps into the recurrence), so padding never changes a prediction.
Training visits the training split epoch by epoch in an order drawn from ``(seed, epoch)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from archlab.errors import check
from archlab.models.interfaces import LabelledTokens, TokenClassifier
from archlab.tasks.base import SPLITS, Batch, EpochOrder, Task, count_from_sums, register_task
from archlab.utils.io import write_text_atomic

LABELS_FILE = "labels.json"


@dataclass
class TextClassConfig:
    tokenizer: str = "char"        # "char" | "word" | "bpe", fitted on the training texts
    max_length: int = 128          # tokens per text, <bos> included; longer texts are cut
    bpe_vocab_size: int = 1000     # tokenizer="bpe": the vocabulary it trains up to
    min_freq: int = 1              # tokenizer="word": rarer words become <unk>
    eval_split: str = "test"       # kept for older task.json files; the trainer asks for each split by name
    val_fraction: float = 0.1      # text<TAB>label files: shares held out (named sets have fixed splits)
    test_fraction: float = 0.1

    def __post_init__(self):
        from archlab.data.tokenizer import TEXT_TOKENIZERS

        check(self.tokenizer in TEXT_TOKENIZERS,
              f"tokenizer must be one of {', '.join(TEXT_TOKENIZERS)}, got {self.tokenizer!r}")
        check(self.max_length >= 2, f"max_length must be >= 2 (<bos> and one token), got {self.max_length}")
        check(self.min_freq >= 1, f"min_freq must be >= 1, got {self.min_freq}")
        check(self.eval_split in SPLITS, f"eval_split must be one of {SPLITS}, got {self.eval_split!r}")
        check(0 <= self.val_fraction and 0 <= self.test_fraction and self.val_fraction + self.test_fraction < 1,
              f"val_fraction + test_fraction must be in [0, 1), got {self.val_fraction} + {self.test_fraction}")


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists to the longest: (ids (N, T), mask (N, T) True on real tokens)."""
    T = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    lengths = torch.tensor([len(s) for s in sequences])
    return ids, torch.arange(T)[None, :] < lengths[:, None]


@register_task
class TextClassTask(Task):
    name = "textclass"
    Config = TextClassConfig
    requires = TokenClassifier
    default_data = "cmudict-syllables"
    metric_modes = {"loss": "min", "accuracy": "max", "macro_f1": "max"}
    saved_files = (LABELS_FILE, "tokenizer.json")

    def __init__(self, config: TextClassConfig, data: str | None = None, saved: Path | None = None):
        super().__init__(config, data, saved)
        from archlab.data import fit_tokenizer, load_labelled_text, load_tokenizer

        data_set = load_labelled_text(self.data, val_fraction=config.val_fraction,
                                      test_fraction=config.test_fraction)
        check(len(data_set.train) > 0, f"--data {self.data!r} has an empty training split")
        self.classes = list(data_set.classes)
        if saved is not None and (Path(saved) / LABELS_FILE).is_file():
            trained_on = json.loads((Path(saved) / LABELS_FILE).read_text())["classes"]
            new = sorted(set(self.classes) - set(trained_on))
            check(not new, f"--data {self.data!r} has labels {new} the checkpoint was not trained on "
                           f"(it knows {trained_on})")
            self.classes = trained_on  # the model's own class order
            self.tokenizer = load_tokenizer(saved)
        else:
            texts = [text for text, _ in data_set.train]
            if config.tokenizer == "bpe":
                check(config.bpe_vocab_size >= 260,
                      f"bpe_vocab_size must be >= 260 (256 bytes + 4 specials), got {config.bpe_vocab_size}")
            self.tokenizer = fit_tokenizer(config.tokenizer, texts, bpe_vocab_size=config.bpe_vocab_size,
                                           min_freq=config.min_freq)
        check(self.tokenizer.pad_id is not None and self.tokenizer.bos_id is not None,
              f"the tokenizer needs <pad> and <bos>, got specials {list(self.tokenizer.specials)}")
        self._bos = self.tokenizer.bos_id
        index = {c: i for i, c in enumerate(self.classes)}
        self.splits = {}
        for split in ("train", *SPLITS):
            examples = getattr(data_set, split)
            ids = [self.encode(text) for text, _ in examples]
            labels = torch.tensor([index[label] for _, label in examples], dtype=torch.long)
            self.splits[split] = (ids, labels)
        check(len(self.splits["test"][1]) > 0,
              f"--data {self.data!r}: the test split is empty; give more examples or a larger test_fraction")
        self._order = EpochOrder(self.num_train_samples)

    def encode(self, text: str) -> list[int]:
        """<bos> + the text's ids, cut to ``max_length`` tokens."""
        return [self._bos, *self.tokenizer.encode(text)][: self.config.max_length]

    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        data = LabelledTokens(self.tokenizer.vocab_size, self.tokenizer.pad_id, len(self.classes))
        return model_class.token_classifier_fields(data, config)

    @property
    def num_train_samples(self) -> int:
        return len(self.splits["train"][1])

    def _batch(self, split: str, idx) -> Batch:
        ids, labels = self.splits[split]
        x, mask = pad_batch([ids[i] for i in idx], self.tokenizer.pad_id)
        return x, mask, labels[idx]

    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        n = self.num_train_samples
        check(batch_size <= n, f"batch_size={batch_size} is larger than the {n} training texts")
        return self._batch("train", self._order.batch(position, batch_size, seed)[shard])

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(split for split in SPLITS if len(self.splits[split][1]) > 0)

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        self.check_split(split)
        n = len(self.splits[split][1])
        for i in range(0, n, batch_size):
            yield self._batch(split, torch.arange(i, min(i + batch_size, n)))

    @property
    def sum_keys(self) -> tuple[str, ...]:
        K = range(len(self.classes))
        return ("loss_sum", "correct", "count", *(f"tp_{k}" for k in K), *(f"predicted_{k}" for k in K),
                *(f"true_{k}" for k in K))

    def _logits(self, model, batch) -> torch.Tensor:
        x, mask, _ = batch
        logits = model.token_logits(x, mask).float()  # (B, K); fp32 loss under autocast
        K = len(self.classes)
        check(logits.dim() == 2 and logits.shape == (x.size(0), K),
              f"the model outputs logits of shape {tuple(logits.shape)}, the data has {K} classes: expected "
              f"({x.size(0)}, {K})")
        return logits

    def step(self, model, batch):
        return F.cross_entropy(self._logits(model, batch), batch[2], reduction="none").mean()

    def evaluate_batch(self, model, batch):
        y, K = batch[2], len(self.classes)
        logits = self._logits(model, batch)
        example_loss = F.cross_entropy(logits, y, reduction="none")  # (B,)
        pred = logits.argmax(-1)
        hit = pred == y
        tp = torch.bincount(y[hit], minlength=K)
        predicted, true = torch.bincount(pred, minlength=K), torch.bincount(y, minlength=K)
        sums = {"loss_sum": example_loss.sum().double(), "correct": hit.sum().double(),
                "count": torch.tensor(float(y.numel()))}
        for k in range(K):
            sums[f"tp_{k}"], sums[f"predicted_{k}"], sums[f"true_{k}"] = tp[k], predicted[k], true[k]
        return sums

    def metrics(self, sums):
        n = count_from_sums(sums)
        f1 = [2 * sums[f"tp_{k}"] / (sums[f"predicted_{k}"] + sums[f"true_{k}"])
              for k in range(len(self.classes)) if sums[f"predicted_{k}"] + sums[f"true_{k}"] > 0]
        return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n, "macro_f1": sum(f1) / len(f1)}

    def save(self, directory: Path) -> None:
        self.tokenizer.save(directory)
        write_text_atomic(Path(directory) / LABELS_FILE, json.dumps({"classes": self.classes}, indent=1) + "\n")
