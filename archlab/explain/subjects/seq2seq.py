"""Encoder-decoders (G2P, translation): a source sequence in, the model's own output sequence out.

The model first writes its output greedily (``translate``, as ``archlab translate`` does). The
watched pass then reads that output back with teacher forcing -- the decoder reads
[bos] y_1 .. y_L and predicts y_1 .. y_L [eos] -- so every attention map and every decoder gate
lines up with a token the model actually wrote: letters -> phonemes for G2P. Rows of a decoder
map are named by the token written at that step; the columns of the decoder's self-attention by
the token read.
"""

from __future__ import annotations

import torch

from archlab.errors import check
from archlab.explain import html as H
from archlab.explain.codec import ArchlabCodec, IdCodec
from archlab.explain.subjects.base import Example, Subject, long_ids

BOS, EOS = "<s>", "</s>"


class Seq2SeqSubject(Subject):
    kind = "seq2seq"
    what = "sequence-to-sequence model"
    reads_text = True
    loss_text = ("the teacher-forced cross-entropy of the reference output (of the model's own output for "
                 "your inputs), -1/N sum_t log p(y_t | y_&lt;t, x)")

    def __init__(self, target, *, resize: bool = False):
        super().__init__(target, resize=resize)
        c = self.model.config
        self.bos_id, self.eos_id, self.pad_id = c.bos_id, c.eos_id, c.pad_id
        if self.task is not None:
            self.src, self.tgt = ArchlabCodec(self.task.source), ArchlabCodec(self.task.target)
            self.max_len = self.task.decode_len
        else:
            self.src = self.tgt = IdCodec()
            limit = getattr(c, self.model.positions_field) if self.model.positions_field else None
            self.max_len = min(20, limit - 1) if limit else 20

    # -- examples ---------------------------------------------------------------------------------
    def _example(self, src_ids: list[int], title: str, reference: list[int] | None = None,
                 references: list[str] | None = None) -> Example:
        src = long_ids(src_ids)
        with torch.no_grad():
            out = self.model.translate(src, max_len=self.max_len)[0].tolist()
        written = out[: out.index(self.eos_id)] if self.eos_id in out else out
        decoder_in = long_ids([self.bos_id] + written)
        ex = Example(title, (src, decoder_in), target=reference, tokens=self.src.shows(src_ids))
        ex.info.update(written=written, read=[BOS] + self.tgt.shows(written), wrote=self.tgt.shows(written) + [EOS],
                       references=references or [])
        return ex

    def default_examples(self, count: int) -> list[Example]:
        if self.task is None:
            (src, _) = self.model.example_input(1, 8)
            return [self._example(src[0].tolist(), "source ids drawn from a fixed seed (no tokenizer)")]
        return [self.test_example(i) for i in range(min(count, self.test_size()))]

    def test_size(self) -> int:
        return len(self.task.test)

    def test_example(self, index: int) -> Example:
        source, refs = self.task.test[index]
        ref_ids = self.task.test_tgt[index]
        ref_ids = ref_ids[ref_ids != self.pad_id].tolist()
        shown = [self.task.format_target(r) for r in refs]
        return self._example(self.task.encode_source(source), f"test example {index}: {source}", ref_ids, shown)

    def from_text(self, text: str, given: str) -> Example:
        check(self.task is not None, f"--input {given!r}: this model has no tokenizer (a registry model); "
                                     "explain a trained run to give it text")
        return self._example(self.task.encode_source(text), f"your input: {text.strip()}")

    # -- model ------------------------------------------------------------------------------------
    def logits(self, ex: Example) -> torch.Tensor:
        with torch.no_grad():
            return self.model(*ex.args).float()[0]  # (L + 1, V)

    def loss(self, ex: Example) -> torch.Tensor:
        target = ex.target if ex.target else ex.info["written"]
        src = ex.args[0]
        if not target:  # the model wrote nothing: score its eos
            target_ids = torch.zeros(1, 0, dtype=torch.long)
        else:
            target_ids = long_ids(target)
        token_loss, n = self.model.token_losses(src, target_ids)
        return token_loss.sum() / n.clamp(min=1)

    # -- page -------------------------------------------------------------------------------------
    def prediction(self, page, examples: list[Example]) -> None:
        s = page.section("prediction", "Prediction",
                         "What the model writes for each input (greedy decoding), each output token coloured by "
                         "the probability the model gave it (hover for the number), beside the reference.")
        rows = []
        for ex in examples:
            probs = self.logits(ex).softmax(-1)
            ids = ex.info["written"] + [self.eos_id]
            p = [float(probs[t, i]) for t, i in enumerate(ids)]
            shown = H.tokens_coloured(ex.info["wrote"], p, titles=[f"p = {v:.3f}" for v in p])
            refs = ex.info["references"]
            mine = self.task.format_target(self.task.target.decode(ex.info["written"])) if self.task else ""
            verdict = ("yes" if mine in refs else "no") if refs else ""
            rows.append([H.e(ex.title), shown, H.e(" | ".join(refs)), verdict])
        s.add(H.table(["input", "output (probability of each token)", "reference(s)", "right?"], rows, raw=[1]))

    def axes(self, name: str, T: int, S: int, ex: Example):
        src, read, wrote = ex.tokens, ex.info["read"], ex.info["wrote"]
        if "encoder" in name and T == S == len(src):
            return src, src
        if ("multihead_attn" in name or name.endswith("attention")) and T == len(wrote) and S == len(src):
            return wrote, src                 # cross-attention: decoder steps over the source
        if "decoder" in name and T == S == len(read):
            return wrote, read                # masked self-attention over what was read so far
        return super().axes(name, T, S, ex)

    def time_labels(self, ex: Example, T: int, name: str = "") -> list[str]:
        if "decoder" in name and T == len(ex.info["read"]):
            return ex.info["read"]
        return super().time_labels(ex, T, name)
