"""Image classifiers: an image in, class probabilities out; saliency and Grad-CAM on top.

The input an image classifier reads is standardised (and, if the model reads another size,
resized) by its classify task; the page shows the image as it was, pixels in [0, 1]. An image
file given with ``--input`` must have the size of the images the model was trained on (the
task's data), unless ``--resize`` asks for it to be resized -- a digit drawn at another scale
reads differently, so nothing is resized silently. It is read as grey or colour to match the
model's input channels.

Saliency (Simonyan et al. 2013): |d score_c / d x|, the largest over the colour channels, for
the predicted class c -- which pixels would change the score most. Grad-CAM (Selvaraju et al.
2017): ReLU(sum_k alpha_k A^k) with alpha_k the mean gradient of the class score over feature map
A^k of the last convolutional stage -- where the evidence for the class sits, at that stage's
resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from archlab.errors import ConfigError, check
from archlab.explain import html as H
from archlab.explain import render
from archlab.explain.subjects.base import Example, Subject
from archlab.utils.runtime import eval_mode


class ImageSubject(Subject):
    kind = "image"
    what = "image classifier"
    reads_images = True
    loss_text = "the cross-entropy of each example's true class (its predicted class for your images)"

    def __init__(self, target, *, resize: bool = False):
        super().__init__(target, resize=resize)
        m = self.model
        if self.task is not None:
            self.classes = [str(c) for c in self.task.classes]
            self.shape = tuple(self.task.image_shape)  # (C, H, W) of the data
        elif getattr(m.config, "vocab_size", None) == 0:  # a recurrent reader of rows: C * W features per row
            self.shape = (1, m.config.input_size, m.config.input_size)
            self.classes = [str(k) for k in range(m.config.num_classes)]
        else:
            side = m.image_side()
            self.shape = (m.config.in_channels, side, side)
            self.classes = [str(k) for k in range(m.config.num_classes)]

    # -- examples ---------------------------------------------------------------------------------
    def model_input(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) in [0, 1] -> (1, C, H', W') as the model reads it."""
        x = image[None]
        if self.task is not None:
            return self.task.prepare(x)
        want = tuple(self.model.input_shape_for(*x.shape[2:])) if hasattr(self.model, "input_shape_for") else None
        if want is not None and tuple(x.shape[2:]) != want:
            x = F.interpolate(x, size=want, mode="bilinear", align_corners=False)
        return x

    def _example(self, image: torch.Tensor, title: str, label: int | None) -> Example:
        return Example(title, (self.model_input(image),), target=label, image=image)

    def default_examples(self, count: int) -> list[Example]:
        if self.task is None:
            image = torch.rand(self.shape, generator=torch.Generator().manual_seed(0))
            return [self._example(image, "a random image (no test data)", None)]
        return [self.test_example(i) for i in range(min(count, self.test_size()))]

    def test_size(self) -> int:
        return len(self.task.test_y)

    def test_example(self, index: int) -> Example:
        label = int(self.task.test_y[index])
        return self._example(self.task.test_x[index], f"test image {index} (label {self.classes[label]})", label)

    def from_image(self, path: Path, given: str) -> Example:
        return self._example(read_image(path, given, self.shape, self.resize), f"your image {path.name}", None)

    def time_labels(self, ex: Example, T: int, name: str = "") -> list[str]:
        return [f"row {t}" for t in range(T)]  # a recurrent classifier reads an image row by row

    def axes(self, name: str, T: int, S: int, ex: Example):
        return patch_axes(T, S) or super().axes(name, T, S, ex)

    def image_attention(self, name: str) -> bool:
        return True

    # -- model ------------------------------------------------------------------------------------
    def probabilities(self, ex: Example) -> torch.Tensor:
        with torch.no_grad():
            return self.model(*ex.args).float().softmax(-1)[0]  # (K,)

    def loss(self, ex: Example) -> torch.Tensor:
        logits = self.model(*ex.args).float()
        y = ex.target if ex.target is not None else int(logits.argmax(-1))
        return F.cross_entropy(logits, torch.tensor([y], device=logits.device))

    # -- page -------------------------------------------------------------------------------------
    def prediction(self, page, examples: list[Example]) -> None:
        s = page.section("prediction", "Prediction", "The class probabilities softmax(z) for each example; "
                         "the true class is marked red when the data says it.")
        cells = []
        for ex in examples:
            p = self.probabilities(ex).numpy()
            top = np.argsort(-p)[:5]
            items = [(self.classes[k], float(p[k]), f"{100 * p[k]:.1f}%") for k in top]
            classes = ["hi" if ex.target is not None and k == ex.target else "" for k in top]
            verdict = ""
            if ex.target is not None:
                ok = int(top[0]) == ex.target
                verdict = f"<p>{'correct' if ok else 'wrong'}: predicted {H.e(self.classes[int(top[0])])}</p>"
            pic = H.picture(render.image_rgb(ex.image.numpy()), scale=max(1, 112 // ex.image.shape[-1]),
                            caption=H.e(ex.title))
            cells.append(f"<div>{pic}{H.bars(items, highest=1.0, classes=classes)}{verdict}</div>")
        s.add(f"<div class='flex'>{''.join(cells)}</div>")

    def saliency(self, ex: Example, cam_module: torch.nn.Module | None):
        """(|d score / d x| (H', W') in [0, 1], Grad-CAM (h, w) in [0, 1] or None, class index)."""
        x = ex.args[0].detach().clone().requires_grad_(True)
        store = {}

        def keep(_m, _a, out):
            store["A"] = out

        handle = cam_module.register_forward_hook(keep) if cam_module is not None else None
        try:
            with eval_mode(self.model), torch.enable_grad():
                logits = self.model(x)
                c = int(logits.argmax(-1))
                wrt = [x] + ([store["A"]] if "A" in store else [])
                grads = torch.autograd.grad(logits[0, c], wrt, allow_unused=True)
        finally:
            if handle is not None:
                handle.remove()
        sal = grads[0][0].abs().amax(0) if grads[0] is not None else torch.zeros(x.shape[2:])
        cam = None
        if len(grads) > 1 and grads[1] is not None:
            A, dA = store["A"][0].detach(), grads[1][0]           # (K, h, w)
            alpha = dA.mean(dim=(1, 2))                           # (K,)
            cam = torch.relu((alpha[:, None, None] * A).sum(0))   # (h, w)
            cam = cam / cam.max() if float(cam.max()) > 0 else cam
        sal = sal / sal.max() if float(sal.max()) > 0 else sal
        return sal.numpy(), (cam.numpy() if cam is not None else None), c


def read_image(path: Path, given: str, shape: tuple[int, int, int], resize: bool) -> torch.Tensor:
    """The image file ``path`` (``--input given``) as a (C, H, W) tensor in [0, 1] of ``shape``: grey or
    colour to match C; of another size only with ``resize``."""
    from PIL import Image, UnidentifiedImageError

    C, Hh, W = shape
    try:
        with Image.open(path) as img:
            img = img.convert("L" if C == 1 else "RGB")
            if img.size != (W, Hh):
                check(resize, f"--input {given!r} is {img.size[0]}x{img.size[1]} pixels, the model reads "
                              f"{W}x{Hh} images; pass --resize to resize it")
                img = img.resize((W, Hh), Image.BILINEAR)
            a = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise ConfigError(f"--input {given!r} cannot be read as an image ({e})") from e
    check(C in (1, 3), f"the model reads {C}-channel images; image files give 1 (grey) or 3 (colour)")
    return torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())  # (C, H, W)


def patch_axes(T: int, S: int) -> tuple[list[str], list[str]] | None:
    """A ViT's attention axes: the class token, then the g x g patches row by row (None if not square)."""
    g = int(round((S - 1) ** 0.5))
    if T == S and g * g == S - 1:
        labels = ["[class]"] + [f"patch {r},{c}" for r in range(g) for c in range(g)]
        return labels, labels
    return None
