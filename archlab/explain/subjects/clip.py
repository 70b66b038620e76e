"""Image-text models (CLIP): a batch of images and a batch of texts in, how well each pair matches out.

The page's examples are one batch: N test images (one of each class first, where the data has
classes) with their own test captions. Both towers embed the batch, and the prediction shows

    u_i = normalise(I_f(image_i) W_i),   v_j = normalise(T_f(text_j) W_t)    unit length (L2)
    s_ij = exp(t) * <u_i, v_j>                  (N, N): images are the rows, texts the columns
    p_ij = softmax_j(s_ij)                      the caption image i picks among the N

with exp(t) the learned temperature; a matching pair sits on the diagonal. Then zero-shot
classification: each image against the class prompts (a class's prompt embeddings averaged and
normalised, CLIP's prompt ensembling), softmax over the classes.

Image files given with ``--input`` (alone or with test indices) go through the image tower with
one prompt per class as the texts, so s is (M images, K classes); test indices alone keep their
captions. Text is refused: the captions come from the test data or the prompts. The watched forward
pass is the model's own on the batch (image tower + text tower: the attention maps show the first
image and the first text), and the gradient is of the batch's symmetric InfoNCE loss,

    L = (CE(s, diag) + CE(s^T, diag)) / 2,

or, with class prompts as the texts, of each image's cross-entropy over the classes. Without a
run's task (a registry name, a Hugging Face folder) the batch is random images and random ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from archlab.errors import check
from archlab.explain import html as H
from archlab.explain import render
from archlab.explain.subjects.base import Example, Subject
from archlab.explain.subjects.image import patch_axes, read_image


class ClipSubject(Subject):
    kind = "clip"
    what = "image-text model"
    reads_images = True
    default_count = 8
    loss_text = ("the batch's symmetric InfoNCE loss, (CE(s, diag) + CE(s<sup>T</sup>, diag)) / 2 with "
                 "s<sub>ij</sub> = exp(t) &lt;u<sub>i</sub>, v<sub>j</sub>&gt; (with class prompts as the texts: "
                 "each image's cross-entropy over the classes, of its predicted class for your images)")

    def __init__(self, target, *, resize: bool = False):
        super().__init__(target, resize=resize)
        c = self.model.config
        if self.task is not None:
            d = self.task.data_set
            self.shape = tuple(self.task.image_shape)  # (C, H, W) of the data
            self.classes, self.prompts = d.classes, d.prompts
            self.pad_id = self.task.tokenizer.pad_id
        else:
            self.shape = (c.in_channels, c.image_size, c.image_size)
            self.classes = self.prompts = None
            self.pad_id = c.pad_id

    def reads(self) -> str:
        return ("images (image files or indices of the test data); the texts are its test captions or, "
                "for image files, its class prompts")

    # -- examples: one Example per image, then one batch ------------------------------------------
    def examples(self, inputs: Sequence[str], count: int | None = None) -> list[Example]:
        return self._batch(super().examples(inputs, count))

    def default_examples(self, count: int) -> list[Example]:
        if self.task is None:
            g = torch.Generator().manual_seed(0)
            c = self.model.config
            out = []
            for i in range(min(count, 4)):
                ids = torch.randint(c.text_vocab_size, (6,), generator=g)
                ids[ids == self.pad_id] = (self.pad_id + 1) % c.text_vocab_size
                out.append(Example(f"random image {i}", (), image=torch.rand(self.shape, generator=g),
                                   info={"text": f"random ids {i}", "ids": ids.tolist()}))
            return out
        return [self.test_example(i) for i in self._one_per_class(count)]

    def _one_per_class(self, count: int) -> list[int]:
        """``count`` test indices: the first image of each class in turn, then the next ones in order."""
        n = self.test_size()
        labels = self.task.data_set.test_labels
        if labels is None:
            return list(range(min(count, n)))
        firsts = [int(torch.nonzero(labels == k)[0]) for k in range(len(self.classes)) if bool((labels == k).any())]
        chosen = firsts[:count]
        taken = set(chosen)
        return chosen + [i for i in range(n) if i not in taken][:count - len(chosen)]

    def test_size(self) -> int:
        return len(self.task.data_set.test_images)

    def test_example(self, index: int) -> Example:
        d = self.task.data_set
        label = int(d.test_labels[index]) if d.test_labels is not None else None
        text = d.test_captions[index]
        named = f" ({self.classes[label]})" if label is not None else ""
        return Example(f"test image {index}{named}", (), target=label, image=d.test_images[index],
                       info={"text": text, "ids": self.task.encode(text)})

    def from_image(self, path: Path, given: str) -> Example:
        return Example(f"your image {path.name}", (), image=read_image(path, given, self.shape, self.resize))

    def _batch(self, items: list[Example]) -> list[Example]:
        """The images of ``items`` and their texts as one batch: their captions when every image has one,
        else one prompt per class. Every example carries the whole batch as its ``args``."""
        paired = all("text" in ex.info for ex in items)
        if paired:
            texts = [ex.info["text"] for ex in items]
            ids = [ex.info["ids"] for ex in items]
        else:
            check(bool(self.prompts), f"{self.target.name} has no class prompts to compare your images with "
                                      "(it needs a run of the clip task on labelled data)")
            texts = [ps[0] for ps in self.prompts]  # the first prompt of each class
            ids = [self.task.encode(t) for t in texts]
        longest = max(map(len, ids))
        ids = torch.tensor([s + [self.pad_id] * (longest - len(s)) for s in ids], dtype=torch.long)  # (N_t, L)
        images = torch.stack([ex.image for ex in items])  # (N_i, C, H, W) in [0, 1]
        args = (self.task.prepare(images) if self.task is not None else images, ids)
        tokens = self._tokens(ids[0])
        for ex in items:
            ex.args, ex.tokens = args, tokens
            ex.info.update(paired=paired, texts=texts)
        return items

    def _tokens(self, ids: torch.Tensor) -> list[str]:
        if self.task is None:
            return [f"#{int(i)}" for i in ids]
        return self.task.token_names(ids.tolist())

    # -- the model on the batch -------------------------------------------------------------------
    def similarities(self, ex: Example) -> tuple[torch.Tensor, float]:
        """(cos(u_i, v_j) (N_i, N_t), exp(t)) of the batch ``ex`` carries."""
        images, ids = ex.args
        with torch.no_grad():
            u, v = self.model.encode_image(images).float(), self.model.encode_text(ids).float()  # (N, d_e)
            return u @ v.T, float(self.model.temperature_scale)

    def batch_loss(self, examples: list[Example]) -> torch.Tensor:
        images, ids = examples[0].args
        if examples[0].info["paired"]:
            return self.model.loss(images, ids).float()
        s = self.model.similarity_logits(images, ids).float()  # (M, K): one text per class
        labels = [ex.target if ex.target is not None else int(s[i].argmax()) for i, ex in enumerate(examples)]
        return F.cross_entropy(s, torch.tensor(labels, device=s.device))

    def image_attention(self, name: str) -> bool:
        return name.startswith("image_encoder.")

    def axes(self, name: str, T: int, S: int, ex: Example):
        if self.image_attention(name):
            return patch_axes(T, S) or super().axes(name, T, S, ex)
        return super().axes(name, T, S, ex)  # the text tower: the first text's tokens

    # -- page -------------------------------------------------------------------------------------
    def prediction(self, page, examples: list[Example]) -> None:
        ex = examples[0]
        paired, texts = ex.info["paired"], ex.info["texts"]
        cos, scale = self.similarities(ex)
        s_ij = scale * cos                       # (N_i, N_t)
        p = s_ij.softmax(-1)                     # per row: which text image i picks
        N = len(examples)
        s = page.section("prediction", "Prediction: image-text similarity",
                         "Both towers embed the batch; u<sub>i</sub> and v<sub>j</sub> are the unit-length "
                         "embeddings of image i and text j, s<sub>ij</sub> = exp(t) &lt;u<sub>i</sub>, "
                         "v<sub>j</sub>&gt; their cosine similarity times the learned temperature, and "
                         "p<sub>ij</sub> = softmax<sub>j</sub>(s<sub>ij</sub>) which text image i picks. "
                         + ("Images are the rows and their own captions the columns: a matching pair sits on "
                            "the diagonal." if paired else
                            "Your images are the rows, the first prompt of each class the columns.")
                         + (" The captions are made from the labels by templates, so images of one digit "
                            "share their meaning." if self.classes else ""))
        rows = [f"{i + 1}" + (f" {self.classes[e.target]}" if e.target is not None and self.classes else "")
                for i, e in enumerate(examples)]
        scale_px = max(1, 56 // self.shape[-1])
        s.add("<div class='flex'>" + "".join(
            H.picture(render.image_rgb(e.image.numpy()), scale=scale_px, caption=f"{i + 1}: {H.e(e.title)}"
                      + (f"<br>&ldquo;{H.e(texts[i])}&rdquo;" if paired else ""))
            for i, e in enumerate(examples)) + "</div>")
        # Columns: numbered like the images above (their captions), or named by class (the prompts).
        cols = [f"{j + 1}: {t}" if paired else f"{self.classes[j]}: {t}" for j, t in enumerate(texts)]
        s.add("<div class='flex'>"
              + H.heatmap(s_ij.numpy(), rows=rows, cols=cols, cmap="diverging",
                          caption=f"s<sub>ij</sub> = exp(t) cos(u<sub>i</sub>, v<sub>j</sub>), exp(t) = {scale:.2f}",
                          legend_label="s_ij")
              + H.heatmap(p.numpy(), rows=rows, cols=cols, vmin=0.0, vmax=1.0,
                          caption="p<sub>ij</sub> = softmax<sub>j</sub>(s<sub>ij</sub>), per row", legend_label="p_ij")
              + "</div>")
        table = [[r, *(f"{float(x):+.3f}" for x in cos[i])] for i, r in enumerate(rows)]
        s.add(f"<details><summary>the cosine similarities cos(u_i, v_j) as numbers</summary>"
              f"{H.table(['image', *cols], table, numeric=range(1, len(cols) + 1))}</details>")
        if paired:
            picks = p.argmax(-1)
            own = int((picks == torch.arange(N)).sum())
            diag = float(cos.diagonal().mean())
            off = float((cos.sum() - cos.diagonal().sum()) / max(N * N - N, 1))
            same = ""
            if all(e.target is not None for e in examples):
                labels = [e.target for e in examples]
                same = (f", {sum(labels[int(j)] == labels[i] for i, j in enumerate(picks))} a caption of their "
                        "own class")
            s.note(f"{own} of {N} images pick their own caption{same}. Mean cosine similarity: "
                   f"{diag:+.3f} on the diagonal (matching pairs), {off:+.3f} off it.")
        self._zero_shot(s, examples)

    def _zero_shot(self, s, examples: list[Example]) -> None:
        s.h3("Zero-shot classification")
        if not self.prompts:
            s.note("No class prompts: zero-shot classification needs a run of the clip task on labelled data.")
            return
        images = examples[0].args[0]
        K, P = len(self.prompts), len(self.prompts[0])
        ids = [self.task.encode(t) for ps in self.prompts for t in ps]
        longest = max(map(len, ids))
        ids = torch.tensor([x + [self.pad_id] * (longest - len(x)) for x in ids], dtype=torch.long)  # (K * P, L)
        with torch.no_grad():
            u = self.model.encode_image(images).float()                                     # (N, d_e)
            v = self.model.encode_text(ids).float().view(K, P, -1)                          # (K, P, d_e)
            class_e = F.normalize(v.mean(1), dim=-1)                                        # (K, d_e)
            probs = (float(self.model.temperature_scale) * u @ class_e.T).softmax(-1)      # (N, K)
        s.note("Each image against every class: the embeddings of a class's prompts ("
               + ", ".join(f"&ldquo;{H.e(t)}&rdquo;" for t in self.prompts[0])
               + " for the first class) averaged and normalised, scaled by exp(t), softmax over the classes. "
               "The true class is marked red.")
        cells, correct = [], 0
        for ex, pr in zip(examples, probs.numpy()):
            top = np.argsort(-pr)[:5]
            items = [(self.classes[k], float(pr[k]), f"{100 * pr[k]:.1f}%") for k in top]
            marks = ["hi" if ex.target is not None and k == ex.target else "" for k in top]
            correct += int(ex.target is not None and int(top[0]) == ex.target)
            pic = H.picture(render.image_rgb(ex.image.numpy()), scale=max(1, 56 // self.shape[-1]),
                            caption=H.e(ex.title))
            cells.append(f"<div>{pic}{H.bars(items, highest=1.0, classes=marks)}</div>")
        s.add(f"<div class='flex'>{''.join(cells)}</div>")
        labelled = sum(ex.target is not None for ex in examples)
        if labelled:
            s.note(f"Zero-shot: {correct} of {labelled} labelled images classified correctly.")
