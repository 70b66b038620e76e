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
    with pytest.raises(ConfigError, 
                       match=r"unknown image data set 'mnist5'.*digits, .*mnist5k.*did you mean 'mnist5k'"):
        load_image_data("mnist5")


def _write_images(folder, sizes, mode="RGB"):
    from PIL import Image

    paths = []
    for i, size in enumerate(sizes):
        folder.mkdir(parents=True, exist_ok=True)
        value = 40 * (i + 1)
        img = Image.new(mode, size, (value, 0, 255) if mode == "RGB" else value)
        img.save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    return paths


def test_image_folder_resized_and_split(tmp_path):
    _write_images(tmp_path / "imgs" / "cat", [(12, 10)] * 5)
    _write_images(tmp_path / "imgs" / "dog", [(20, 16), (12, 10), (12, 10), (12, 10), (12, 10)])
    d = load_image_data(tmp_path / "imgs", image_size=(8, 6))
    assert d.classes == ["cat", "dog"] and d.image_shape == (3, 8, 6)
    assert (len(d.train), len(d.test)) == (8, 2)
    assert torch.bincount(d.test.tensors[1]).tolist() == [1, 1]
    x = torch.cat([d.train.tensors[0], d.test.tensors[0]])
    assert torch.all(x[:, 1] == 0) and torch.all(x[:, 2] == 1.0)  # green 0, blue 255 -> 1.0
    # without a size: the first image's size (H, W) = (10, 12)
    assert load_image_data(tmp_path / "imgs").image_shape == (3, 10, 12)


def test_image_folder_presplit_grey(tmp_path):
    for part in ("train", "test"):
        for c in ("a", "b"):
            _write_images(tmp_path / "set" / part / c, [(4, 4)] * (3 if part == "train" else 1), mode="L")
    d = load_image_data(str(tmp_path / "set"))
    assert d.image_shape == (1, 4, 4) and (len(d.train), len(d.test)) == (6, 2)
    assert d.train.tensors[0][0, 0, 0, 0].item() == pytest.approx(40 / 255)


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ConfigError, match="one subfolder per class holding images"):
        load_image_data(tmp_path / "empty")
    (tmp_path / "bad" / "cls").mkdir(parents=True)
    (tmp_path / "bad" / "cls" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=r"cannot read .*x\.png"):
        load_image_data(tmp_path / "bad")
    with pytest.raises(ConfigError, match="image folder .*nowhere' does not exist"):
        load_image_data(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("name,least", [("digits", 0.85), ("mnist5k", 0.75)])
def test_labels_still_match_their_images_after_shuffling(name, least):
    """Nearest class mean scores 0.88 (digits) and 0.80 (MNIST-5k); a label/image mix-up would score ~0.10."""
    d = load_image_data(name)
    x, y = d.train.tensors[0].flatten(1), d.train.tensors[1]
    centroids = torch.stack([x[y == c].mean(0) for c in range(10)])  # (10, C*H*W)
    x_test, y_test = d.test.tensors[0].flatten(1), d.test.tensors[1]
    predicted = torch.cdist(x_test, centroids).argmin(1)
    assert (predicted == y_test).float().mean() > least
