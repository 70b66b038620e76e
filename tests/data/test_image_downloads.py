"""MNIST, Fashion-MNIST and CIFAR-10 loaders against tiny files in the real formats, served on loopback."""

import gzip
import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from archlab.data import load_image_data
from archlab.data.formats import read_idx
from archlab.errors import ConfigError

rng = np.random.default_rng(0)


def idx_gz(array: np.ndarray) -> bytes:
    """IDX bytes as LeCun's files lay them out: 0, 0, type 0x08 (ubyte), ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def serve_idx_set(server, n_train=12, n_test=5):
    parts = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) * 3) % 10,
    }
    checksums = {}
    for name, array in parts.items():
        data = idx_gz(array)
        server.put(name, data)
        checksums[name] = hashlib.sha256(data).hexdigest()
    return parts, checksums


@pytest.mark.parametrize("name,first_class", [("mnist", "0"), ("fashion_mnist", "T-shirt/top")])
def test_idx_sets_load_in_order(loopback, tmp_path, name, first_class):
    parts, checksums = serve_idx_set(loopback)
    d = load_image_data(name, root=tmp_path, base_url=loopback.url, checksums=checksums)
    assert d.name == name and d.image_shape == (1, 28, 28) and d.classes[0] == first_class
    x, y = d.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x[:, 0], torch.tensor(parts["train-images-idx3-ubyte.gz"] / 255.0, dtype=torch.float32))
    assert y.tolist() == parts["train-labels-idx1-ubyte.gz"].tolist()
    assert d.test.tensors[1].tolist() == parts["t10k-labels-idx1-ubyte.gz"].tolist()
    assert len(loopback.requests) == 4
    # cached: a second load makes no request
    load_image_data(name, root=tmp_path, download=False, checksums=checksums)
    assert len(loopback.requests) == 4


def test_idx_reader_rejects_bad_files(tmp_path):
    bad = tmp_path / "x.gz"
    bad.write_bytes(gzip.compress(b"\x1f\x00\x08\x01abcd"))
    with pytest.raises(ConfigError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short.gz"
    truncated = gzip.decompress(idx_gz(np.zeros((4, 2, 2))))[:-3]
    short.write_bytes(gzip.compress(truncated))
    with pytest.raises(ConfigError, match=r"declares shape \(4, 2, 2\) \(16 bytes\), the file holds 13"):
        read_idx(short)


def cifar_archive(batches: dict[str, tuple[np.ndarray, list[int]]], names: list[str]) -> bytes:
    """A cifar-10-python.tar.gz in the published layout: pickled dicts with bytes keys."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        members = {k: {b"data": x.reshape(len(x), -1), b"labels": y} for k, (x, y) in batches.items()}
        members["batches.meta"] = {b"label_names": [n.encode() for n in names]}
        for member, content in members.items():
            data = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_cifar10_python_batches(loopback, tmp_path):
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    batches = {f"data_batch_{i}": (rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), [i, i + 1])
               for i in range(1, 6)}
    batches["test_batch"] = (rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8), [9, 8, 7])
    archive = cifar_archive(batches, names)
    loopback.put("cifar-10-python.tar.gz", archive)
    d = load_image_data("cifar10", root=tmp_path, base_url=loopback.url,
                        checksums={"cifar-10-python.tar.gz": hashlib.sha256(archive).hexdigest()})
    assert d.image_shape == (3, 32, 32) and d.classes == names and (len(d.train), len(d.test)) == (10, 3)
    x, y = d.train.tensors
    # batch order and the R, G, B planes land where they were written
    assert torch.equal(x[2], torch.tensor(batches["data_batch_2"][0][0] / 255.0, dtype=torch.float32))
    assert y.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert d.test.tensors[1].tolist() == [9, 8, 7]
    assert len(d.mean) == 3 and d.mean[1] == pytest.approx(x[:, 1].double().mean().item(), abs=1e-9)


def test_cifar10_refuses_unverified_archive(loopback, tmp_path):
    loopback.put("cifar-10-python.tar.gz", b"not the archive")
    with pytest.raises(ConfigError, match="SHA-256"):
        load_image_data("cifar10", root=tmp_path, base_url=loopback.url)
