"""The image-classification task: epochs visit every image once, shards split the global batch."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from archlab.errors import ConfigError
from archlab.registry import create_model, model_config, model_info
from archlab.tasks.classify import ClassifyConfig, ClassifyTask
from archlab.train import RunSpec, evaluate, train


@pytest.fixture(scope="module")
def task():
    return ClassifyTask(ClassifyConfig(), "digits")


def test_an_epoch_visits_every_training_image_once(task):
    n, bs = len(task.train_y), 64
    per_epoch = n // bs  # the last, incomplete batch is dropped
    epoch = torch.cat([task.train_batch(p, bs, seed=0, shard=slice(0, bs))[0] for p in range(per_epoch)])
    rows = lambda x: Counter(tuple(r) for r in x.flatten(1).tolist())  # noqa: E731  multiset of images
    visited, split = rows(epoch), rows(task._normalize(task.train_x))
    assert not visited - split  # no image more often than it is in the split
    assert sum((split - visited).values()) == n - per_epoch * bs  # all but the dropped remainder
    # The next epoch is another order of the same images.
    assert not torch.equal(task.train_batch(per_epoch, bs, 0, slice(0, bs))[0], epoch[:bs])
    # Two processes' shards are the halves of the global batch.
    x, y = task.train_batch(5, bs, 0, slice(0, bs))
    assert torch.equal(task.train_batch(5, bs, 0, slice(32, 64))[0], x[32:])


def test_images_are_standardised_with_training_statistics(task):
    x = torch.cat([task.train_batch(p, 100, 0, slice(0, 100))[0] for p in range(len(task.train_y) // 100)])
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1.0) < 0.05


def fields(task, name):
    return task.model_fields(model_info(name).model_class, model_config(name))


def test_each_model_says_which_fields_the_images_fix(task):
    assert fields(task, "mlp") == {"num_classes": 10, "in_features": 64}  # 1 x 8 x 8 flattened
    assert fields(task, "resnet18") == {"num_classes": 10, "in_channels": 1}
    assert fields(task, "lenet5") == {"num_classes": 10, "in_channels": 1, "input_size": 8}  # centred in 32x32
    assert fields(task, "vit_tiny")["image_size"] == 14  # 8 px rounded up to whole 7x7 patches
    assert fields(task, "rnn_classifier") == {"num_classes": 10, "input_size": 8, "vocab_size": 0}  # 8 rows of 8


def test_images_are_resized_to_what_the_model_reads():
    small = ClassifyTask(ClassifyConfig(), "digits")
    net = create_model("resnet18", num_classes=10, in_channels=1)  # five stride-2 stages: >= 32 px
    small.attach(net)
    x, _ = small.train_batch(0, 4, 0, slice(0, 4))
    assert x.shape == (4, 1, 32, 32) and next(iter(small.eval_batches(3)))[0].shape == (3, 1, 32, 32)
    assert net(x).shape == (4, 10)
    small.attach(create_model("mlp", in_features=64))  # the MLP reads any size: no resizing
    assert small.train_batch(0, 4, 0, slice(0, 4))[0].shape == (4, 1, 8, 8)


def test_epochs_set_the_number_of_steps_and_other_data_is_refused(tmp_path):
    out = tmp_path / "run"
    settings = {"hidden": "16", "batch_size": 100, "epochs": 1.5, "max_steps": 0, "log_every": 100}
    result = train(RunSpec(task="classify", model="mlp", data="digits", out=out, settings=settings))
    assert result["step"] == 20  # ceil(1.5 * 1,295 training images / 100): 1,438 less 143 for validation
    # A model trained on the 10 digit classes cannot be evaluated on a folder of 3 classes.
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for c in ("a", "b", "c"):
        (tmp_path / "folder" / c).mkdir(parents=True)
        for i in range(5):
            pixels = torch.randint(0, 256, (8, 8), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(tmp_path / "folder" / c / f"{i}.png")
    with pytest.raises(ConfigError, match="has 3 classes of images \\(1, 8, 8\\), the checkpoint was trained on "
                                          "10 classes of images \\(1, 8, 8\\)"):
        evaluate(out, str(tmp_path / "folder"))


def _assert_exact_and_training_only(augmented, plain, position, batch):
    """The augmented batch of 16 at ``position`` (seed 0) is a function of (seed, position), so a
    resumed run gets it again; two processes' shards are its halves; evaluation images are untouched."""
    assert torch.equal(augmented.train_batch(position, 16, seed=0, shard=slice(0, 16))[0], batch)  # exact resume
    halves = [augmented.train_batch(position, 16, seed=0, shard=s)[0] for s in (slice(0, 8), slice(8, 16))]
    assert torch.equal(torch.cat(halves), batch)  # two processes see the one global batch
    assert torch.equal(next(augmented.eval_batches(16, "test"))[0], next(plain.eval_batches(16, "test"))[0])


def test_shift_augmentation_moves_images_reproducibly_and_shards_exactly():
    plain = ClassifyTask(ClassifyConfig(), "digits")
    shifted = ClassifyTask(ClassifyConfig(shift=2), "digits")
    x0, y0 = plain.train_batch(3, 16, seed=0, shard=slice(0, 16))
    x1, y1 = shifted.train_batch(3, 16, seed=0, shard=slice(0, 16))
    assert torch.equal(y0, y1) and x0.shape == x1.shape  # same images in the same order, moved
    assert not torch.equal(x0, x1)
    # A shift is a translation: every shifted image is its original moved by at most 2 pixels.
    raw = plain.train_x[plain._order.batch(3, 16, seed=0)]
    for img, orig in zip(x1, raw):
        denorm = img * torch.tensor(shifted.std).view(-1, 1, 1) + torch.tensor(shifted.mean).view(-1, 1, 1)
        padded = torch.nn.functional.pad(orig, (2, 2, 2, 2))
        assert any(torch.allclose(denorm, padded[:, t:t + 8, l:l + 8], atol=1e-5)
                   for t in range(5) for l in range(5))
    _assert_exact_and_training_only(shifted, plain, 3, x1)
    with pytest.raises(ConfigError, match="shift must be an integer >= 0"):
        ClassifyConfig(shift=-1)


def test_rotate_and_zoom_augmentation_turns_training_images_reproducibly():
    plain = ClassifyTask(ClassifyConfig(), "digits")
    turned = ClassifyTask(ClassifyConfig(rotate=15, zoom=0.1), "digits")
    x0, y0 = plain.train_batch(5, 16, seed=0, shard=slice(0, 16))
    x1, y1 = turned.train_batch(5, 16, seed=0, shard=slice(0, 16))
    assert torch.equal(y0, y1) and x0.shape == x1.shape and not torch.equal(x0, x1)
    # Each image is its original turned and zoomed by the draws of (seed, position), then normalised.
    from archlab.data.transforms import RandomAffine, turn_and_zoom
    from archlab.tasks.base import generator_for

    raw = plain.train_x[plain._order.batch(5, 16, seed=0)]
    angles, zooms = RandomAffine(15, 0.1).draw(16, generator_for(0, 5, stream=104_729))
    assert torch.allclose(x1, turned.prepare(turn_and_zoom(raw, angles, zooms)), atol=1e-6)
    _assert_exact_and_training_only(turned, plain, 5, x1)
    with pytest.raises(ConfigError, match=r"rotate must be a number of degrees in \[0, 180\] \(0 = off\), got -5"):
        ClassifyConfig(rotate=-5)
    with pytest.raises(ConfigError, match=r"zoom must be a number in \[0, 1\) \(0 = off\), got 1.5"):
        ClassifyConfig(zoom=1.5)


def test_elastic_augmentation_bends_training_images_after_turning_them():
    plain = ClassifyTask(ClassifyConfig(), "digits")
    turned = ClassifyTask(ClassifyConfig(rotate=15), "digits")
    bent = ClassifyTask(ClassifyConfig(rotate=15, elastic=20, elastic_sigma=3), "digits")
    x1, _ = turned.train_batch(5, 16, seed=0, shard=slice(0, 16))
    x2, _ = bent.train_batch(5, 16, seed=0, shard=slice(0, 16))
    # Turned by the same draws as without it (its own stream), then bent by the draws of (seed, position).
    from archlab.data.transforms import RandomAffine, RandomElastic, displace, turn_and_zoom
    from archlab.tasks.base import generator_for

    raw = plain.train_x[plain._order.batch(5, 16, seed=0)]
    angles, zooms = RandomAffine(15, 0).draw(16, generator_for(0, 5, stream=104_729))
    field = RandomElastic(20, 3).draw(16, *raw.shape[-2:], generator_for(0, 5, stream=15_485_863)).float()
    assert torch.allclose(x1, turned.prepare(turn_and_zoom(raw, angles, zooms)), atol=1e-6)
    assert torch.allclose(x2, bent.prepare(displace(turn_and_zoom(raw, angles, zooms), field)), atol=1e-5)
    assert not torch.allclose(x1, x2, atol=1e-3)
    _assert_exact_and_training_only(bent, plain, 5, x2)
    with pytest.raises(ConfigError, match=r"elastic must be a number of pixels in \[0, 100\] \(0 = off\), got -3"):
        ClassifyConfig(elastic=-3)
    with pytest.raises(ConfigError, match=r"elastic_sigma must be a number of pixels in \[0.5, 20\], got 0.1"):
        ClassifyConfig(elastic=10, elastic_sigma=0.1)


def test_train_size_keeps_one_fixed_subset_and_the_train_split_scores_it():
    small = ClassifyTask(ClassifyConfig(train_size=100), "digits")
    again = ClassifyTask(ClassifyConfig(train_size=100), "digits")
    full = ClassifyTask(ClassifyConfig(), "digits")
    assert len(small.train_y) == 100 and torch.equal(small.train_x, again.train_x)
    assert len(set(small.train_y.tolist())) == 10  # a random subset, every class in it
    # every kept image is a training image
    rows = {tuple(r) for r in full.train_x.flatten(1).tolist()}
    assert all(tuple(r) in rows for r in small.train_x.flatten(1).tolist())
    assert not {tuple(r) for r in small.train_x.flatten(1).tolist()} & {tuple(r) for r in full.val_x.flatten(1).tolist()}
    xs, ys = zip(*small.eval_batches(64, "train"))
    assert torch.equal(torch.cat(ys), small.train_y) and torch.cat(xs).shape[0] == 100
    with pytest.raises(ConfigError, match="train_size=5000 is larger than the 1295 training images"):
        ClassifyTask(ClassifyConfig(train_size=5000), "digits")
    with pytest.raises(ConfigError, match="split must be one of val, test or train for task 'classify', got 'dev'"):
        next(small.eval_batches(8, "dev"))


def test_eval_shift_moves_the_evaluation_images_only():
    plain = ClassifyTask(ClassifyConfig(), "digits")
    moved = ClassifyTask(ClassifyConfig(eval_shift=(0, 2)), "digits")
    x0, y0 = next(iter(plain.eval_batches(32)))
    x1, y1 = next(iter(moved.eval_batches(32)))
    assert torch.equal(y0, y1)
    torch.testing.assert_close(x1[..., :, 2:], x0[..., :, :6], atol=0, rtol=0)  # columns moved right by 2
    background = (0 - plain.mean[0]) / plain.std[0]  # a zero pixel, normalised
    assert torch.allclose(x1[..., :, :2], torch.full_like(x1[..., :, :2], background))
    assert torch.equal(moved.train_batch(0, 16, 0, slice(0, 16))[0], plain.train_batch(0, 16, 0, slice(0, 16))[0])
    with pytest.raises(ConfigError, match="eval_shift must be two integers"):
        ClassifyConfig(eval_shift=(1, 2, 3))


def test_the_validation_images_are_a_fixed_stratified_share_of_the_training_split(task):
    assert len(task.val_y) == 143 and len(task.train_y) == 1_438 - 143 and len(task.test_y) == 359
    rows = lambda x: {tuple(r) for r in x.flatten(1).tolist()}  # noqa: E731
    assert not rows(task.val_x) & rows(task.train_x)  # held out: never trained on
    counts = torch.bincount(task.val_y, minlength=10)
    assert counts.min() >= 13 and counts.max() <= 16  # every digit about 10% of its training images
    assert torch.equal(ClassifyTask(ClassifyConfig(), "digits").val_y, task.val_y)  # the same for every run
    none = ClassifyTask(ClassifyConfig(val_fraction=0.0), "digits")
    assert none.eval_splits == ("test",) and len(none.train_y) == 1_438
    with pytest.raises(ConfigError, match="has no val split"):
        next(none.eval_batches(8, "val"))
