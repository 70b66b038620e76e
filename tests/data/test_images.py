import numpy as np
import pytest
import torch

from archlab.data import ImageData, load_image_data
from archlab.errors import ConfigError


def _check_image_data(d: ImageData, shape, n_train, n_test):
    x, y = d.train.tensors
    assert d.image_shape == shape and d.num_classes == 10
    assert (len(d.train), len(d.test)) == (n_train, n_test)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() == 1.0  # scaled, and the brightest pixel reaches 1
    # mean/std are the train split's per-channel statistics
    assert d.mean[0] == pytest.approx(x.double().mean().item(), abs=1e-9)
    assert d.std[0] == pytest.approx(x.double().std(unbiased=False).item(), abs=1e-9)


def test_mnist5k_is_shuffled_stratified_and_fixed():
    d = load_image_data("mnist5k")
    _check_image_data(d, (1, 28, 28), 4000, 1000)
    y_train, y_test = d.train.tensors[1], d.test.tensors[1]
    assert torch.bincount(y_train).tolist() == [400] * 10
    assert torch.bincount(y_test).tolist() == [100] * 10
    assert len(set(y_train[:50].tolist())) >= 8  # shuffled: the package stores them sorted
    assert d.mean[0] == pytest.approx(0.1307, abs=0.005)  # the familiar MNIST mean
    # the split is fixed: a second load gives the same pixels in the same order
    again = load_image_data("mnist5k")
    assert torch.equal(again.test.tensors[0], d.test.tensors[0])
    # and every test image is distinct from every train image (no leak between the parts)
    flat_train = {row.numpy().tobytes() for row in d.train.tensors[0].flatten(1)}
    assert not any(row.numpy().tobytes() in flat_train for row in d.test.tensors[0].flatten(1))


def test_digits_split_and_cache_is_not_shared():
    d = load_image_data("digits")
    _check_image_data(d, (1, 8, 8), 1438, 359)
    assert torch.bincount(d.test.tensors[1]).min() >= 35
    d.train.tensors[0].zero_()  # a caller changing pixels in place
    assert load_image_data("digits").train.tensors[0].max() == 1.0


def test_unknown_name_lists_known_and_hints():
    with pytest.raises(ConfigError, match=r"unknown image data set 'mnist5'.*digits, .*mnist5k.*did you mean 'mnist5k'"):
        load_image_data("mnist5")
