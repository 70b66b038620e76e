"""Images with captions: captions made from labels (held-out prompt templates), and a folder with captions.tsv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from archlab.data import load_captioned_images
from archlab.data.captions import PROMPT_TEMPLATES, TRAIN_TEMPLATES, digit_captions
from archlab.data.tokenizer import WORD_PATTERN
from archlab.errors import ConfigError


@pytest.fixture(scope="module")
def mnist():
    return load_captioned_images("mnist5k")


def test_captions_come_from_the_labels(mnist):
    assert len(mnist.train_captions) == len(mnist.train_labels) == 4000 and len(mnist.test_captions) == 1000
    assert mnist.image_shape == (1, 28, 28) and mnist.classes[7] == "seven"
    for caps, y in zip(mnist.train_captions[:50], mnist.train_labels[:50].tolist()):
        assert caps == digit_captions(y) and len(caps) == len(TRAIN_TEMPLATES)
    assert digit_captions(7)[:2] == ("a handwritten seven", "the digit 7")
    for caption, y in zip(mnist.test_captions, mnist.test_labels.tolist()):
        assert caption in mnist.prompts[y]  # a test image is described by one of its digit's held-out prompts
    assert torch.equal(mnist.test_groups, mnist.test_labels)
    used = {PROMPT_TEMPLATES.index(next(t for t in PROMPT_TEMPLATES if t.format(word=mnist.classes[y], digit=y) == c))
            for c, y in zip(mnist.test_captions, mnist.test_labels.tolist())}
    assert used == {0, 1, 2}  # every held-out template describes some test images


def test_prompts_are_never_training_captions_but_use_their_words(mnist):
    training = {c for caps in mnist.train_captions for c in caps}
    prompts = {p for ps in mnist.prompts for p in ps}
    assert len(training) == 80 and len(prompts) == 30
    assert not training & prompts  # held out: no prompt string is ever trained on
    words = {w for c in training for w in WORD_PATTERN.findall(c.lower())}
    assert {w for p in prompts for w in WORD_PATTERN.findall(p.lower())} <= words  # but no word is unknown


def test_the_cache_is_not_shared_with_callers(mnist):
    mnist.train_images[0].fill_(7.0)
    assert load_captioned_images("mnist5k").train_images[0].max() <= 1.0


def test_digits_have_their_own_split():
    d = load_captioned_images("digits")
    assert d.image_shape == (1, 8, 8) and len(d.train_captions) + len(d.test_captions) == 1797


def _folder(tmp_path, lines, n=10):
    for i in range(n):
        pixels = np.full((6, 5), 25 * i, dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(tmp_path / f"img{i}.png")
    (tmp_path / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_a_folder_with_a_captions_file(tmp_path):
    shade = lambda i: "a dark square" if i < 3 else "a grey square" if i < 7 else "a light square"  # noqa: E731
    lines = ["# file<TAB>caption", "img0.png\tthe darkest one", "",
             *(f"img{i}.png\t{shade(i)}" for i in range(10))]
    d = load_captioned_images(_folder(tmp_path, lines))
    assert d.image_shape == (1, 6, 5) and d.classes is None and d.prompts is None
    assert len(d.train_captions) == 8 and len(d.test_captions) == 2  # 80 / 20 of ten images
    every = {caps for caps in d.train_captions} | {(c,) for c in d.test_captions}
    assert ("the darkest one", "a dark square") in every or "the darkest one" in d.test_captions
    # A test image is described by its first caption; test items with the same text form one group.
    texts = d.test_captions
    assert bool(d.test_groups[0] == d.test_groups[1]) == (texts[0] == texts[1])
    assert d.mean[0] == pytest.approx(d.train_images.mean().item(), abs=1e-6)


def test_folder_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match="has no captions.tsv"):
        load_captioned_images(tmp_path)
    _folder(tmp_path, ["img0.png a caption without a tab", "img1.png\tfine"])
    with pytest.raises(ConfigError, match="captions.tsv, line 1: expected file<TAB>caption"):
        load_captioned_images(tmp_path)
    (tmp_path / "captions.tsv").write_text("img0.png\tone\nmissing.png\ttwo\n")
    with pytest.raises(ConfigError, match="image 'missing.png' does not exist"):
        load_captioned_images(tmp_path)
    with pytest.raises(ConfigError, match="must be one of mnist5k, digits .* or a folder"):
        load_captioned_images("cifar10")
