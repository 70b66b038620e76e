"""Images with captions, for image-text models (CLIP): every set as ``CaptionedImages``.

Offline, with captions generated from the labels -- they say nothing the label does not:
    "mnist5k", "digits"   the digits of ``archlab.data.images`` (same images, same splits). A training
                          image of a 7 may be described by any of ``TRAIN_TEMPLATES`` filled with its
                          digit ("a handwritten seven", "the digit 7", "seven, written by hand", ...);
                          the task draws one each time it visits the image. A test image gets one
                          caption from ``PROMPT_TEMPLATES``, drawn once with ``common.SEED``.

``PROMPT_TEMPLATES`` are held out: no training caption is ever one of them (they reuse the training
captions' words in other combinations), so zero-shot classification with them -- "a photo of the
number seven" against the other nine digits -- asks whether the model learned what the words
mean, not which strings came with which images. They are the test captions too.

User data:
    a folder holding images and a ``captions.tsv`` of ``file<TAB>caption`` lines (paths relative to
    the folder; several lines for one image give it several captions, one drawn per visit; blank
    lines and lines starting with ``#`` are skipped). Images are split 80/20 with ``common.SEED``; a
    test image is described by its first caption. Images are resized to the size of the first one,
    grey when all are grey, else RGB.

Test items say the same thing when they share a group (``test_groups``): generated captions group by
label (every caption of a 7 describes any 7), a folder's by caption text (identical captions are
interchangeable). Retrieval counts a hit within the group.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from archlab.data.common import SEED
from archlab.data.images import channel_stats, load_image_data
from archlab.errors import ConfigError, check

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_TEMPLATES = (
    "a handwritten {word}",
    "the digit {digit}",
    "the number {word} written by hand",
    "a photo of the digit {digit}",
    "a scan of a handwritten {word}",
    "an image of the number {digit}",
    "{word}, written by hand",
    "a drawing of a {digit}",
)
PROMPT_TEMPLATES = (
    "a photo of the number {word}",
    "the digit {digit} written by hand",
    "an image of a handwritten {digit}",
)
CAPTIONED_SETS = ("mnist5k", "digits")
CAPTIONS_FILE = "captions.tsv"


@dataclass
class CaptionedImages:
    """Train and test images with their captions; labels, class names and prompts when captions come from labels."""

    name: str
    train_images: torch.Tensor                 # (N, C, H, W) float32 in [0, 1]
    train_captions: list[tuple[str, ...]]      # per training image, the captions it may be given
    test_images: torch.Tensor                  # (M, C, H, W)
    test_captions: list[str]                   # one per test image
    test_groups: torch.Tensor                  # (M,) int64: items of one group say the same thing
    mean: tuple[float, ...]                    # per channel, over the training images
    std: tuple[float, ...]
    classes: list[str] | None = None           # class names, when the captions come from labels
    train_labels: torch.Tensor | None = None   # (N,) int64
    test_labels: torch.Tensor | None = None    # (M,) int64
    prompts: list[tuple[str, ...]] | None = None  # per class, the held-out zero-shot prompts

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


def digit_captions(digit: int, templates=TRAIN_TEMPLATES) -> tuple[str, ...]:
    """Every caption ``templates`` make of ``digit``: "a handwritten seven", "the digit 7", ..."""
    return tuple(t.format(word=DIGIT_WORDS[digit], digit=digit) for t in templates)


@functools.lru_cache(maxsize=None)
def _captioned_digits(name: str) -> CaptionedImages:
    images = load_image_data(name)
    x_train, y_train = images.train.tensors
    x_test, y_test = images.test.tensors
    rng = np.random.default_rng(SEED)
    which = rng.integers(len(PROMPT_TEMPLATES), size=len(y_test))  # each test image's prompt template
    prompts = [digit_captions(d, PROMPT_TEMPLATES) for d in range(10)]
    return CaptionedImages(
        name=name, train_images=x_train, train_captions=[digit_captions(int(y)) for y in y_train],
        test_images=x_test, test_captions=[prompts[int(y)][int(j)] for y, j in zip(y_test, which)],
        test_groups=y_test.clone(), mean=tuple(images.mean), std=tuple(images.std), classes=list(DIGIT_WORDS),
        train_labels=y_train, test_labels=y_test, prompts=prompts)


def read_captions_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """``file<TAB>caption`` lines -> {file: [captions, in file order]}; bad lines name their number."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        file, sep, caption = line.partition("\t")
        check(sep and file.strip() and caption.strip(),
              f"{path}, line {number}: expected file<TAB>caption, got {line[:60]!r}")
        out.setdefault(file.strip(), []).append(caption.strip())
    check(len(out) > 0, f"{path} holds no file<TAB>caption lines")
    return out


def load_caption_folder(path: str | os.PathLike, test_fraction: float = 0.2) -> CaptionedImages:
    """A folder of images with a ``captions.tsv`` (see the module docstring)."""
    from archlab.data.images import _open_image, _read_images

    folder = Path(path)
    table = folder / CAPTIONS_FILE
    check(table.is_file(), f"image-caption folder {str(folder)!r} has no {CAPTIONS_FILE} (file<TAB>caption lines)")
    captions = read_captions_file(table)
    files = sorted(captions)
    for f in files:
        check((folder / f).is_file(), f"{table}: image {f!r} does not exist in {str(folder)!r}")
    check(len(files) >= 2, f"{table} describes {len(files)} image; a train and a test split need at least 2")
    with _open_image(folder / files[0]) as first:
        size = first.size[::-1]  # Pillow sizes are (W, H)
    grey = True
    for f in files:
        with _open_image(folder / f) as img:
            grey = grey and img.mode in ("1", "L", "I", "I;16", "F")
    x = torch.from_numpy(_read_images([folder / f for f in files], size, "L" if grey else "RGB"))  # (N, C, H, W)
    order = np.random.default_rng(SEED).permutation(len(files))
    n_test = max(1, int(round(test_fraction * len(files))))
    test, train = order[:n_test], order[n_test:]
    test_captions = [captions[files[i]][0] for i in test]
    texts = sorted(set(test_captions))
    mean, std = channel_stats(x[train])
    return CaptionedImages(
        name=folder.name, train_images=x[train], train_captions=[tuple(captions[files[i]]) for i in train],
        test_images=x[test], test_captions=test_captions,
        test_groups=torch.tensor([texts.index(c) for c in test_captions]), mean=mean, std=std)


def load_captioned_images(name_or_path: str | os.PathLike) -> CaptionedImages:
    """``"mnist5k"`` or ``"digits"`` with generated captions, or a folder with a ``captions.tsv``."""
    name = str(name_or_path)
    if name in CAPTIONED_SETS:
        data = _captioned_digits(name)
        return CaptionedImages(**{  # copies: a caller changing them cannot change the cache
            **data.__dict__, "train_images": data.train_images.clone(), "test_images": data.test_images.clone(),
            "train_captions": list(data.train_captions), "test_captions": list(data.test_captions),
            "test_groups": data.test_groups.clone(), "classes": list(data.classes),
            "train_labels": data.train_labels.clone(), "test_labels": data.test_labels.clone(),
            "prompts": list(data.prompts)})
    if Path(name).expanduser().is_dir():
        return load_caption_folder(Path(name).expanduser())
    raise ConfigError(f"image-caption data must be one of {', '.join(CAPTIONED_SETS)} (captions made from the "
                      f"labels) or a folder of images with a {CAPTIONS_FILE}, got {name!r}")
