"""Readers for the file formats of the public image sets, with numpy and struct only.

IDX (MNIST, Fashion-MNIST; LeCun et al.): a big-endian header ``0x00 0x00 <type> <ndim>``, then
``ndim`` int32 sizes, then the values row-major. Type 0x08 is unsigned byte.

CIFAR-10 "python version" (Krizhevsky 2009): a tar.gz of pickled dicts; ``data`` is a
(10000, 3072) uint8 array, rows of 1024 red, 1024 green, 1024 blue values (32x32 row-major);
``labels`` a list of ints; ``batches.meta`` holds ``label_names``.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

from archlab.errors import ConfigError

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped if its name ends in .gz) as a numpy array of its declared shape."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise ConfigError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'})")
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}i", raw[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ConfigError(f"{path}: IDX header declares shape {shape} ({expected} bytes), "
                          f"the file holds {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]


def read_cifar10(archive: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(x_train, y_train, x_test, y_test, label_names)`` from cifar-10-python.tar.gz; x uint8 (N, 3, 32, 32).

    The batches are pickles, which can run code when loaded: only call this on an archive whose
    SHA-256 was verified against the published digest (``download.fetch`` does so).
    """
    with tarfile.open(archive, "r:gz") as tar:

        def unpickle(member: str) -> dict:
            try:
                f = tar.extractfile(f"{CIFAR10_FOLDER}/{member}")
            except KeyError as e:
                raise ConfigError(
                    f"{archive}: no {CIFAR10_FOLDER}/{member} inside; not a CIFAR-10 python archive") from e
            return pickle.load(f, encoding="bytes")  # verified file only (see docstring)

        def batches(members: list[str]) -> tuple[np.ndarray, np.ndarray]:
            parts = [unpickle(m) for m in members]
            x = np.concatenate([np.asarray(p[b"data"], dtype=np.uint8) for p in parts])
            y = np.concatenate([np.asarray(p[b"labels"], dtype=np.int64) for p in parts])
            return x.reshape(-1, 3, 32, 32), y  # (N, 3072) -> (N, C, H, W)

        x_train, y_train = batches(CIFAR10_TRAIN)
        x_test, y_test = batches(CIFAR10_TEST)
        names = [n.decode() for n in unpickle("batches.meta")[b"label_names"]]
    return x_train, y_train, x_test, y_test, names
