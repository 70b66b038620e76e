"""What every kind of model shares on a page: examples, a forward pass, a loss, labelled axes.

A *subject* knows, for one capability (an image classifier, a language model, ...), how to turn
``--input`` into model inputs, which forward pass to watch, what loss the gradients are taken of,
what the prediction looks like, and which labels go on the axes of an attention map. The generic
sections (layers, activations, gradients, filters, gates, attention) only ask it these questions.

``--input`` values are read by ``read_input``::

    17  or  #17  or  index:17    example 17 of the task's test data
    path/to/file.png             an image file (png, jpg, bmp, gif, webp, tif)
    path/to/notes.txt            a text file: its text
    text:17  or  any other text  that text
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from archlab.errors import ConfigError, check

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class Input:
    kind: str          # "index" | "image" | "text"
    value: Any         # int, Path or str
    given: str         # as the user wrote it


def read_input(text: str) -> Input:
    """Which kind of ``--input`` ``text`` is; see the module docstring."""
    prefix, sep, rest = text.partition(":")
    if sep and prefix in ("index", "test"):
        check(rest.strip().isdigit(), f"--input {text!r}: {prefix}: must be followed by a number, e.g. {prefix}:3")
        return Input("index", int(rest), text)
    if sep and prefix == "text":
        return Input("text", rest, text)
    if sep and prefix in ("image", "file"):
        path = Path(rest).expanduser()
        check(path.is_file(), f"--input {text!r}: no such file {rest!r}")
        return Input("image" if path.suffix.lower() in IMAGE_SUFFIXES else "text",
                     path if path.suffix.lower() in IMAGE_SUFFIXES else _read_text(path), text)
    if re.fullmatch(r"#?\d+", text.strip()):
        return Input("index", int(text.strip().lstrip("#")), text)
    path = Path(text).expanduser()
    if len(text) < 4096 and "\n" not in text and path.suffix.lower() in IMAGE_SUFFIXES:
        check(path.is_file(), f"--input {text!r}: no such image file")
        return Input("image", path, text)
    if len(text) < 4096 and "\n" not in text and path.is_file():
        return Input("text", _read_text(path), text)
    return Input("text", text, text)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip("\n")
    except UnicodeDecodeError as e:
        raise ConfigError(f"--input {str(path)!r} is neither an image nor UTF-8 text ({e.reason} at byte {e.start})")


@dataclass
class Example:
    """One input of the page, as a batch of one."""

    title: str                                   # "test image 3 (label 7)", "your text"
    args: tuple[torch.Tensor, ...]               # what the watched forward pass reads
    target: Any = None                           # what the loss compares with (label, ids, window)
    tokens: list[str] | None = None              # labels of the input positions
    image: torch.Tensor | None = None            # (C, H, W) in [0, 1], for display
    info: dict[str, Any] = field(default_factory=dict)


class Subject:
    """Base class: the questions the generic sections ask (see the module docstring)."""

    kind = ""                 # a short name: "image", "lm", "seq2seq", ...
    what = ""                 # what the model does, for the page's header
    reads_text = False        # --input text goes in
    reads_images = False      # --input image files go in
    default_count = 3

    def __init__(self, target, *, resize: bool = False):
        self.target, self.model, self.task = target, target.model, target.task
        self.resize = resize

    # -- examples ---------------------------------------------------------------------------------
    def examples(self, inputs: Sequence[str], count: int | None = None) -> list[Example]:
        """The examples of the page: ``--input`` values, or by default a few of the test data."""
        if not inputs:
            out = self.default_examples(count or self.default_count)
            check(len(out) > 0, f"{self.target.text!r} has no test data to show; give --input")
            return out
        out = []
        for text in inputs:
            given = read_input(text)
            if given.kind == "index":
                out.append(self.indexed(given.value, text))
            elif given.kind == "image":
                check(self.reads_images, f"--input {text!r} is an image; {self.target.name} reads {self.reads()}")
                out.append(self.from_image(given.value, text))
            else:
                check(self.reads_text, f"--input {text!r} is not an image file nor an index of the test data; "
                                       f"{self.target.name} reads {self.reads()}")
                check(given.value.strip() != "", f"--input {text!r} is empty")
                out.append(self.from_text(given.value, text))
        return out

    def reads(self) -> str:
        return "text" if self.reads_text else "images" if self.reads_images else "its test data (give an index)"

    def default_examples(self, count: int) -> list[Example]:
        raise NotImplementedError

    def indexed(self, index: int, given: str) -> Example:
        check(self.task is not None, f"--input {given!r} is an index into the test data, but "
                                     f"{self.target.text!r} is not a run of `archlab train`: it has none")
        n = self.test_size()
        check(0 <= index < n, f"--input {given!r}: the test data has {n} examples (indices 0 to {n - 1})")
        return self.test_example(index)

    def test_size(self) -> int:
        raise NotImplementedError

    def test_example(self, index: int) -> Example:
        raise NotImplementedError

    def from_text(self, text: str, given: str) -> Example:
        raise NotImplementedError

    def from_image(self, path: Path, given: str) -> Example:
        raise NotImplementedError

    # -- the model on an example ------------------------------------------------------------------
    def forward(self, ex: Example) -> Any:
        """The forward pass that is watched (activations, attention weights, recurrent inputs)."""
        return self.model(*ex.args)

    def loss(self, ex: Example) -> torch.Tensor:
        """The scalar whose gradient the gradient-flow section shows."""
        raise NotImplementedError

    loss_text = ""            # what ``loss`` is, in words

    def batch_loss(self, examples: list[Example]) -> torch.Tensor:
        """The loss of the gradient-flow section: by default the mean of ``loss`` over the examples."""
        return sum(self.loss(ex) for ex in examples) / len(examples)

    # -- the page ---------------------------------------------------------------------------------
    def prediction(self, page, examples: list[Example]) -> None:
        """Add the prediction section(s)."""
        raise NotImplementedError

    def extra(self, page, examples: list[Example], captured) -> None:
        """Sections only this kind of model has (sampling of a language model, ViT's patches...)."""

    def axes(self, name: str, T: int, S: int, ex: Example) -> tuple[list[str] | None, list[str] | None]:
        """Labels of the query rows (T) and key columns (S) of attention module ``name``."""
        tokens = ex.tokens
        if tokens is not None and len(tokens) == T == S:
            return tokens, tokens
        return [str(i) for i in range(T)], [str(j) for j in range(S)]

    def image_attention(self, name: str) -> bool:
        """Whether attention module ``name`` reads image patches (a ViT's: its patch-attention section)."""
        return False

    def time_labels(self, ex: Example, T: int, name: str = "") -> list[str]:
        """Labels of the T steps recurrent layer (or 1-D convolution) ``name`` read (tokens when they match)."""
        if ex.tokens is not None and len(ex.tokens) == T:
            return ex.tokens
        return [str(t) for t in range(T)]


def long_ids(ids: Sequence[int]) -> torch.Tensor:
    return torch.tensor([list(ids)], dtype=torch.long)  # (1, T)
