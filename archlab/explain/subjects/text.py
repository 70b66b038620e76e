"""Models that read token ids: language models, masked language models, text classifiers, encoders.

The text is turned into ids by the model's own vocabulary (``archlab.explain.codec``): the
tokenizer a run saved, a Hugging Face folder's ``tokenizer.json``, or -- for a registry model with
random weights -- the text's UTF-8 bytes.

    LanguageSubject   GPT, RNN language models: p(x_{t+1} | x_<=t) at every position; the next-token
                      distribution after the text, and how temperature / top-k / top-p reshape it
    MaskedSubject     BERT with its masked-LM head: the most likely tokens at the masked positions
    TokenClassSubject BERT / RNN classifiers: class probabilities of a text
    EncoderSubject    a BERT without a head (e.g. all-MiniLM-L6-v2): sentence embeddings (the mean of
                      the final states, L2-normalised) and how similar the inputs are
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from archlab.errors import check
from archlab.explain import html as H
from archlab.explain.codec import ArchlabCodec, ByteCodec, Codec, HFCodec, IdCodec
from archlab.explain.subjects.base import Example, Subject, long_ids

SENTENCES = ("The quick brown fox jumps over the lazy dog.",
             "Transformers read every word of a sentence at once.",
             "A recurrent network carries its memory from one word to the next.")
SHOWN_TOKENS = 48          # tokens of test text per default example
SAMPLING = [("T = 0.5", dict(temperature=0.5)), ("T = 1", dict(temperature=1.0)), ("T = 2", dict(temperature=2.0)),
            ("top-k 5", dict(top_k=5)), ("top-p 0.9", dict(top_p=0.9))]


def codec_for(target, vocab_size: int) -> Codec:
    """The vocabulary of ``target``: its task's tokenizer, a saved tokenizer, an HF tokenizer, or bytes."""
    tok = getattr(target.task, "tokenizer", None) if target.task is not None else None
    if tok is not None:
        return ArchlabCodec(tok)
    path = target.path
    if target.kind == "hf":
        return HFCodec(path / "tokenizer.json") if (path / "tokenizer.json").is_file() else IdCodec()
    if path is not None and (Path(path) / "tokenizer.json").is_file():
        from archlab.data import load_tokenizer

        return ArchlabCodec(load_tokenizer(path))
    return ByteCodec(vocab_size) if vocab_size >= 256 else IdCodec()


class TextSubject(Subject):
    """Shared by the subjects that read one sequence of token ids."""

    reads_text = True

    def __init__(self, target, *, resize: bool = False):
        super().__init__(target, resize=resize)
        self.vocab_size = self.model.config.vocab_size
        self.codec = codec_for(target, self.vocab_size)

    def max_tokens(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def encode(self, text: str, given: str) -> list[int]:
        ids = self.codec.encode(text, f"--input {given[:40]!r}")
        check(len(ids) > 0, f"--input {given!r} encodes to no tokens")
        limit = self.max_tokens()
        check(limit is None or len(ids) <= limit,
              f"--input is {len(ids)} tokens long, the model reads at most {limit}")
        return ids

    def sentence_examples(self, count: int) -> list[Example]:
        """Built-in sentences, for a model without test data (or token ids drawn from a fixed seed)."""
        if isinstance(self.codec, IdCodec):
            (ids,) = self.model.example_input(1, 16)[:1]
            return [self.example_from_ids(ids[0].tolist(), "token ids drawn from a fixed seed (no tokenizer)")]
        return [self.example_from_ids(self.encode(s, s), f"“{s}”") for s in SENTENCES[:count]]

    def example_from_ids(self, ids: list[int], title: str) -> Example:
        return Example(title, (long_ids(ids),), tokens=self.codec.shows(ids), info={"ids": ids})

    def from_text(self, text: str, given: str) -> Example:
        return self.example_from_ids(self.encode(text, given), f"your text “{text[:60]}”")


# ------------------------------------------------------------------------------------------------
# Language models
# ------------------------------------------------------------------------------------------------


class LanguageSubject(TextSubject):
    kind = "lm"
    what = "language model"
    loss_text = "the mean cross-entropy of each next token of the text, -log p(x_{t+1} | x_<=t)"

    def max_tokens(self) -> int | None:
        return self.model.max_context()

    def _val(self):
        return self.task.val_tokens

    def shown(self) -> int:
        return min(self.max_tokens() or SHOWN_TOKENS, SHOWN_TOKENS)

    def default_examples(self, count: int) -> list[Example]:
        if self.task is None:
            return self.sentence_examples(count)
        n = self.test_size()
        starts = sorted({(i * n) // count for i in range(count)})
        return [self.test_example(i) for i in starts]

    def test_size(self) -> int:
        return max(1, (len(self._val()) - 1) // self.shown())

    def test_example(self, index: int) -> Example:
        T = self.shown()
        ids = self._val()[index * T:(index + 1) * T].tolist()
        return self.example_from_ids(ids, f"validation text, block {index}")

    def logits(self, ex: Example) -> torch.Tensor:
        with torch.no_grad():
            return self.model(*ex.args).float()[0]  # (T, V)

    def loss(self, ex: Example) -> torch.Tensor:
        ids = ex.args[0]
        logits = self.model(ids).float()  # (1, T, V)
        if ids.size(1) < 2:
            return logits.logsumexp(-1).mean() * 0.0  # one token: nothing to predict inside the text
        return F.cross_entropy(logits[0, :-1], ids[0, 1:])

    def prediction(self, page, examples: list[Example]) -> None:
        s = page.section("prediction", "Prediction",
                         "Each token coloured by the probability the model gave it before seeing it, p(x_{t+1} | "
                         "x_&lt;=t) (hover for the number); then the distribution of the token after the text.")
        for ex in examples:
            logits = self.logits(ex)
            probs = logits.softmax(-1)
            ids = ex.info["ids"]
            seen = [None] + [float(probs[t, ids[t + 1]]) for t in range(len(ids) - 1)]
            titles = ["first token: nothing before it"] + [f"p = {p:.3f}" for p in seen[1:]]
            s.h3(ex.title)
            s.add(H.tokens_coloured(ex.tokens, seen, titles=titles))
            if len(ids) > 1:
                nll = -float(np.mean([math.log(max(p, 1e-12)) for p in seen[1:]]))
                s.note(f"mean -log p = {nll:.3f} nats per token (perplexity {math.exp(nll):.2f}) over "
                       f"{len(ids) - 1} predicted tokens")
            last = probs[-1]
            top = torch.topk(last, min(10, last.numel()))
            s.add("<p>The next token after the text:</p>" + H.bars(
                [(self.codec.show(int(i)), float(p), f"{100 * float(p):.1f}%") for p, i in zip(top.values, top.indices)],
                highest=float(top.values[0])))

    def extra(self, page, examples: list[Example], captured) -> None:
        from archlab.models.decoding import next_token_probs

        ex = examples[0]
        z = self.logits(ex)[-1]                                   # (V,) the next token's logits
        s = page.section("sampling", "Sampling: temperature, top-k, top-p",
                         "How generation draws the next token after “" + ("…" if len(ex.tokens) > 40 else "")
                         + H.e("".join(ex.tokens[-40:])) + "”. "
                         "Temperature T divides the logits before the softmax (T &lt; 1 sharpens, T &gt; 1 flattens); "
                         "top-k keeps the k most likely tokens, top-p the fewest whose probabilities reach p; what "
                         "is kept is renormalised (archlab.models.decoding.next_token_probs, the distribution "
                         "<code>archlab generate</code> samples from).")
        dists = {label: next_token_probs(z, **kw) for label, kw in SAMPLING}
        order = torch.argsort(dists["T = 1"], descending=True)[:12]
        rows = []
        for i in order.tolist():
            rows.append([self.codec.show(i)] + [f"{100 * float(d[i]):.1f}%" if float(d[i]) > 0 else "removed"
                                                for d in dists.values()])
        kept = ["tokens that can be drawn"] + [f"{int((d > 0).sum()):,} of {z.numel():,}" for d in dists.values()]
        s.add(H.table(["token", *dists], rows + [kept], numeric=range(1, len(dists) + 1)))
        V = z.numel()
        shown = torch.argsort(z, descending=True)[: min(V, 1000)]
        rest = float(1 - z.softmax(-1)[shown].sum()) if V > len(shown) else 0.0
        s.h3("Try it")
        s.add(H.sampling_widget([self.codec.show(int(i)) for i in shown], z[shown].tolist(), vocab=V, rest=rest))


# ------------------------------------------------------------------------------------------------
# Masked language models
# ------------------------------------------------------------------------------------------------


class MaskedSubject(TextSubject):
    kind = "mlm"
    what = "masked language model"
    loss_text = "the cross-entropy of the original token at each masked position (BERT's pre-training loss)"

    def default_examples(self, count: int) -> list[Example]:
        if self.task is None:
            return [self._masked(self.encode(s, s), f"“{s}”") for s in SENTENCES[:count]]
        asked = [i for i in range(self.test_size()) if bool((self.task.val_labels[i, :SHOWN_TOKENS] != -100).any())]
        return [self.test_example(i) for i in asked[:count]]

    def test_size(self) -> int:
        return len(self.task.val_inputs)

    def test_example(self, index: int) -> Example:
        ids = self.task.val_inputs[index, :SHOWN_TOKENS].tolist()
        labels = self.task.val_labels[index, :SHOWN_TOKENS].tolist()
        if all(v == -100 for v in labels):  # nothing asked in the part shown: ask the middle token
            mid = len(ids) // 2
            labels[mid], ids[mid] = ids[mid], self.codec.mask_id
        return self._example(ids, labels, f"validation text, block {index} (masked as in evaluation)")

    def _example(self, ids: list[int], labels: list[int], title: str) -> Example:
        ex = self.example_from_ids(ids, title)
        ex.target = torch.tensor([labels])
        return ex

    def _masked(self, ids: list[int], title: str) -> Example:
        """Mask the tokens the user wrote as the mask token, or else about 15% of them (a fixed draw)."""
        mask_id = self.codec.mask_id
        check(mask_id is not None, "the model's tokenizer has no mask token, so nothing can be masked")
        specials = {self.codec.pad_id, self.codec.bos_id, self.codec.eos_id, mask_id}
        labels = [-100] * len(ids)
        if mask_id in ids:
            return self._example(ids, labels, title + " (your masks: the model cannot see the answers)")
        g = torch.Generator().manual_seed(0)
        chosen = [t for t in range(len(ids)) if ids[t] not in specials and float(torch.rand(1, generator=g)) < 0.15]
        candidates = [t for t in range(len(ids)) if ids[t] not in specials]
        check(bool(candidates), "the text has no token to mask")
        for t in chosen or [candidates[len(candidates) // 2]]:
            labels[t], ids[t] = ids[t], mask_id
        return self._example(ids, labels, title)

    def from_text(self, text: str, given: str) -> Example:
        return self._masked(self.encode(text, given), f"your text “{text[:60]}”")

    def loss(self, ex: Example) -> torch.Tensor:
        from archlab.models.interfaces import masked_lm_loss

        labels = ex.target
        logits = self.model.masked_lm_logits(ex.args[0])
        if bool((labels == -100).all()):
            return logits.float().sum() * 0.0
        return masked_lm_loss(logits, labels)

    def prediction(self, page, examples: list[Example]) -> None:
        s = page.section("prediction", "Prediction", "At each masked position (red), the model's most likely "
                         "tokens with their probabilities; it reads the whole text at once, both sides of the gap.")
        for ex in examples:
            with torch.no_grad():
                probs = self.model.masked_lm_logits(ex.args[0]).float().softmax(-1)[0]  # (T, V)
            labels = ex.target[0].tolist()
            ids = ex.info["ids"]
            marks = [1.0 if ids[t] == self.codec.mask_id else None for t in range(len(ids))]
            s.h3(ex.title)
            s.add(H.tokens_coloured(ex.tokens, marks, cmap="diverging", vmin=-1.0, vmax=1.0))
            rows = []
            for t in range(len(ids)):
                if ids[t] != self.codec.mask_id and labels[t] == -100:
                    continue
                top = torch.topk(probs[t], 5)
                guess = ", ".join(f"{self.codec.show(int(i))} {100 * float(p):.0f}%" for p, i in zip(top.values, top.indices))
                truth = self.codec.show(labels[t]) if labels[t] != -100 else "?"
                rows.append([t, truth, guess, "yes" if labels[t] == int(top.indices[0]) else "no"])
            s.add(H.table(["position", "original", "most likely (probability)", "right?"], rows, numeric=[0]))


# ------------------------------------------------------------------------------------------------
# Text classifiers
# ------------------------------------------------------------------------------------------------


class TokenClassSubject(TextSubject):
    kind = "textclass"
    what = "text classifier"
    loss_text = "the cross-entropy of each text's true class (its predicted class for your texts)"

    def __init__(self, target, *, resize: bool = False):
        super().__init__(target, resize=resize)
        if self.task is not None:
            self.classes = [str(c) for c in self.task.classes]
        else:
            k = getattr(self.model.config, "num_labels", None) or getattr(self.model.config, "num_classes", 2)
            self.classes = [f"class {i}" for i in range(k)]

    def _split(self):
        return self.task.splits[self.task.config.eval_split]

    def default_examples(self, count: int) -> list[Example]:
        if self.task is None:
            return self.sentence_examples(count)
        return [self.test_example(i) for i in range(min(count, self.test_size()))]

    def test_size(self) -> int:
        return len(self._split()[1])

    def test_example(self, index: int) -> Example:
        ids, labels = self._split()
        label = int(labels[index])
        ex = self.example_from_ids(list(ids[index]), f"test text {index} (label {self.classes[label]})")
        ex.target = label
        return ex

    def from_text(self, text: str, given: str) -> Example:
        ids = self.encode(text, given)
        if self.task is not None:
            ids = self.task.encode(text)  # <bos> first, cut to max_length, as in training
        return self.example_from_ids(ids, f"your text “{text[:60]}”")

    def forward(self, ex: Example):
        ids = ex.args[0]
        return self.model.token_logits(ids, torch.ones_like(ids, dtype=torch.bool))

    def loss(self, ex: Example) -> torch.Tensor:
        logits = self.forward(ex).float()
        y = ex.target if ex.target is not None else int(logits.argmax(-1))
        return F.cross_entropy(logits, torch.tensor([y]))

    def prediction(self, page, examples: list[Example]) -> None:
        s = page.section("prediction", "Prediction", "Class probabilities of each text; the true class is red "
                         "when the data says it.")
        cells = []
        for ex in examples:
            with torch.no_grad():
                p = self.forward(ex).float().softmax(-1)[0].numpy()
            top = np.argsort(-p)[:6]
            items = [(self.classes[k], float(p[k]), f"{100 * p[k]:.1f}%") for k in top]
            cls = ["hi" if ex.target is not None and k == ex.target else "" for k in top]
            cells.append(f"<div><h3>{H.e(ex.title)}</h3>{H.tokens_coloured(ex.tokens, [None] * len(ex.tokens))}"
                         f"{H.bars(items, highest=1.0, classes=cls)}</div>")
        s.add(f"<div class='flex'>{''.join(cells)}</div>")


# ------------------------------------------------------------------------------------------------
# Encoders without a head (sentence embeddings)
# ------------------------------------------------------------------------------------------------


class EncoderSubject(TextSubject):
    kind = "encoder"
    what = "Transformer encoder (no head)"
    loss_text = ("the cross-entropy of reading each input token back from its final state through the "
                 "word-embedding matrix, logits_t = h_t W_word^T (the model has no head of its own; this "
                 "objective only serves to show how gradients flow through the layers)")

    def default_examples(self, count: int) -> list[Example]:
        return self.sentence_examples(count)

    def test_size(self) -> int:
        return 0

    def embedding(self, ex: Example) -> torch.Tensor:
        from archlab.models.bert import mean_pool

        ids = ex.args[0]
        with torch.no_grad():
            h = self.model(ids).last_hidden_state
        return mean_pool(h, torch.ones_like(ids))[0]  # (H,)

    def loss(self, ex: Example) -> torch.Tensor:
        ids = ex.args[0]
        h = self.model(ids).last_hidden_state                      # (1, T, H)
        logits = h @ self.model.embeddings.word_embeddings.weight.T  # (1, T, V)
        return F.cross_entropy(logits[0].float(), ids[0])

    def prediction(self, page, examples: list[Example]) -> None:
        s = page.section("prediction", "Output: sentence embeddings",
                         "The model's output is one vector per text: the mean of its tokens' final states, "
                         "L2-normalised (sentence-transformers' pooling). Texts that mean similar things get "
                         "vectors pointing the same way; the map shows the cosine similarity of every pair.")
        E = torch.stack([self.embedding(ex) for ex in examples])  # (N, H)
        names = [f"{i}: {ex.title[:50]}" for i, ex in enumerate(examples)]
        sims = (E @ E.T).numpy()
        if len(examples) > 1:
            s.add(H.heatmap(sims, rows=names, cols=[str(i) for i in range(len(examples))], vmin=-1.0, vmax=1.0,
                            cmap="diverging", cell=40, legend_label="cosine similarity"))
            rows = [[n] + [f"{v:+.3f}" for v in row] for n, row in zip(names, sims)]
            s.add(H.table(["text", *[str(i) for i in range(len(examples))]], rows,
                          numeric=range(1, len(examples) + 1)))
        for ex, e in zip(examples, E):
            s.add(f"<p class='note'>{H.e(ex.title)}: {len(ex.tokens)} tokens, embedding of {e.numel()} values, "
                  f"first eight {', '.join(f'{float(v):+.3f}' for v in e[:8])}</p>")
