"""Image classification: an image in, one of K class labels out.

The model maps an image x to logits z (K,); the loss is the cross-entropy
``L = -log softmax(z)_y`` averaged over the batch, the metrics are that loss and the accuracy
``mean(argmax z == y)`` on a held-out split. Images are normalised per channel with the training
images' mean and standard deviation, ``x' = (x - mean) / std``; those statistics and the class
names are saved beside the checkpoint as ``classes.json`` and reused when evaluating.

Splits: the data set's test split is the ``test`` split, touched once at the end; the
``validation`` split that the trainer evaluates during training (and early-stops on) is a fixed,
stratified ``val_fraction`` of the data set's training images, drawn with ``common.SEED`` (the
same images for every run seed); the model trains on the rest. MNIST-5k: 3,600 train / 400
validation / 1,000 test.

Augmentation (training batches only, drawn from ``(seed, position)``): ``rotate`` turns each image by
up to that many degrees and ``zoom`` scales it by up to that fraction (``RandomAffine``); ``elastic``
bends it by a smooth random field of that strength in pixels, ``elastic_sigma`` its smoothness
(``RandomElastic``, Simard et al. 2003's 34 and 4); then ``shift`` moves it by up to that many
pixels (``RandomCrop`` of the zero-padded image).

Training visits the training split epoch by epoch, each in a fresh order drawn from
``(seed, epoch)``; a batch that would cross the end of an epoch is dropped.

Any ``ImageClassifier`` trains here; the model class says which of its config fields the images
fix (``image_classifier_fields``: channels and classes; a flattened size for the MLP, a row width
for a recurrent reader, a side for LeNet-5 and ViT). Images smaller than a model can read (8x8
digits for a ResNet whose five stride-2 stages need 32 px) are resized to the model's input shape
(bilinear), for training and evaluation alike.

Settings for measurements: ``train_size`` trains on a fixed random subset of the training split
(the same one for every seed and run, drawn after the validation share is held out); evaluating
``split="train"`` (``evaluate_model``, ``archlab evaluate --split train``) reports the metrics on
the images trained on, unaugmented (the train / test gap of overfitting); ``eval_shift=(dy, dx)``
moves every evaluation image by that many pixels, zeros coming in (translation tolerance).
Training never sees the shift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from archlab.data.common import SEED
from archlab.data.transforms import RandomAffine, RandomCrop, RandomElastic, Translate
from archlab.errors import check
from archlab.models.interfaces import ImageClassifier, ImageData
from archlab.tasks.base import SPLITS, Batch, EpochOrder, Task, count_from_sums, generator_for, register_task
from archlab.utils.io import write_text_atomic

CLASSES_FILE = "classes.json"


@dataclass
class ClassifyConfig:
    normalize: bool = True         # standardise each channel with the training split's statistics
    shift: int = 0                 # augmentation: pad training images by this many pixels and crop back
                                   # at a random offset (each image moves up to `shift` pixels); 0 = off
    rotate: float = 0.0            # augmentation: turn each training image by up to this many degrees
    zoom: float = 0.0              # augmentation: scale each training image by a factor in [1 - zoom, 1 + zoom]
    elastic: float = 0.0           # augmentation: elastic distortion of this strength in pixels (alpha; 0 = off)
    elastic_sigma: float = 4.0     # ... and smoothness: its random field's Gaussian blur, in pixels
    val_fraction: float = 0.1      # share of the training images held out for validation (0 = none)

    train_size: int = 0            # train on this many images, a fixed random subset of the training split; 0 = all
    eval_shift: tuple[int, int] = (0, 0)  # (dy, dx): evaluation images moved down / right by this many pixels

    def __post_init__(self):
        check(isinstance(self.shift, int) and self.shift >= 0, f"shift must be an integer >= 0, got {self.shift!r}")
        check(isinstance(self.rotate, (int, float)) and 0 <= self.rotate <= 180,
              f"rotate must be a number of degrees in [0, 180] (0 = off), got {self.rotate!r}")
        check(isinstance(self.zoom, (int, float)) and 0 <= self.zoom < 1,
              f"zoom must be a number in [0, 1) (0 = off), got {self.zoom!r}")
        check(isinstance(self.elastic, (int, float)) and 0 <= self.elastic <= 100,
              f"elastic must be a number of pixels in [0, 100] (0 = off), got {self.elastic!r}")
        check(isinstance(self.elastic_sigma, (int, float)) and 0.5 <= self.elastic_sigma <= 20,
              f"elastic_sigma must be a number of pixels in [0.5, 20], got {self.elastic_sigma!r}")
        check(isinstance(self.train_size, int) and self.train_size >= 0,
              f"train_size must be an integer >= 0 (0 = the whole training split), got {self.train_size!r}")
        self.eval_shift = tuple(self.eval_shift)
        check(len(self.eval_shift) == 2 and all(isinstance(v, int) for v in self.eval_shift),
              f"eval_shift must be two integers (dy, dx), got {self.eval_shift!r}")
        check(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")


@register_task
class ClassifyTask(Task):
    name = "classify"
    Config = ClassifyConfig
    requires = ImageClassifier
    default_data = "digits"
    metric_modes = {"loss": "min", "accuracy": "max"}
    sum_keys = ("loss_sum", "correct", "count")
    evaluates_train = True
    saved_files = (CLASSES_FILE,)

    def __init__(self, config: ClassifyConfig, data: str | None = None, saved: Path | None = None):
        super().__init__(config, data, saved)
        from archlab.data import load_image_data

        from archlab.data.common import stratified_split
        from archlab.data.images import channel_stats

        images = load_image_data(self.data)
        train_x, train_y = images.train.tensors
        self.test_x, self.test_y = images.test.tensors
        self.val_x, self.val_y = train_x[:0], train_y[:0]
        if config.val_fraction > 0:
            keep, held = stratified_split(train_y.numpy(), config.val_fraction)
            keep, held = torch.as_tensor(keep), torch.as_tensor(held)
            train_x, train_y, self.val_x, self.val_y = train_x[keep], train_y[keep], train_x[held], train_y[held]
        self.train_x, self.train_y = train_x, train_y
        self.classes, self.image_shape = list(images.classes), tuple(images.image_shape)
        self.mean, self.std = channel_stats(train_x) if len(train_y) else (tuple(images.mean), tuple(images.std))
        if saved is not None and (Path(saved) / CLASSES_FILE).is_file():
            meta = json.loads((Path(saved) / CLASSES_FILE).read_text())
            check(
                len(meta["classes"]) == len(self.classes) and list(meta["image_shape"]) == list(self.image_shape),
                f"--data {self.data!r} has {len(self.classes)} classes of images {self.image_shape}, the checkpoint "
                f"was trained on {len(meta['classes'])} classes of images {tuple(meta['image_shape'])}",
            )
            self.classes, self.mean, self.std = meta["classes"], tuple(meta["mean"]), tuple(meta["std"])
        check(len(self.train_y) > 0, f"--data {self.data!r} has an empty training split")
        if config.train_size:
            n = len(self.train_y)
            check(config.train_size <= n, f"train_size={config.train_size} is larger than the {n} training images "
                                          f"of --data {self.data!r}")
            g = torch.Generator().manual_seed(SEED)  # the same subset for every run
            keep = torch.randperm(n, generator=g)[:config.train_size]
            self.train_x, self.train_y = self.train_x[keep], self.train_y[keep]
        self._order = EpochOrder(len(self.train_y))
        self.input_shape = tuple(self.image_shape[1:])  # (H, W) the model reads; set by attach()

    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        C, H, W = self.image_shape
        return model_class.image_classifier_fields(ImageData(C, H, W, len(self.classes)), config)

    def attach(self, model: torch.nn.Module) -> None:
        """The shape the model reads: images are resized to it when it differs from theirs."""
        self.input_shape = tuple(model.input_shape_for(*self.image_shape[1:]))

    @property
    def num_train_samples(self) -> int:
        return len(self.train_y)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised (and, for a model that reads another shape, resized) images."""
        if tuple(x.shape[2:]) != self.input_shape:
            x = F.interpolate(x, size=self.input_shape, mode="bilinear", align_corners=False)  # (B, C, H', W')
        if not self.config.normalize:
            return x
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)  # (1, C, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).clamp_min(1e-8).view(1, -1, 1, 1)
        return (x - mean) / std

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) of the data's shape, pixels in [0, 1], as the model reads them: resized
        to its input shape when that differs, standardised with the training split's statistics."""
        return self._normalize(x)

    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        n = len(self.train_y)
        check(batch_size <= n, f"batch_size={batch_size} is larger than the {n} training images")
        idx = self._order.batch(position, batch_size, seed)
        x = self.train_x[idx]
        if self.config.rotate or self.config.zoom:  # turned and zoomed first, then shifted
            g = generator_for(seed, position, stream=104_729)
            x = RandomAffine(self.config.rotate, self.config.zoom)(x, generator=g)
        if self.config.elastic:  # then bent
            g = generator_for(seed, position, stream=15_485_863)
            x = RandomElastic(self.config.elastic, self.config.elastic_sigma)(x, generator=g)
        if self.config.shift:
            # Offsets for the whole global batch from (seed, position), then this process's rows:
            # exact on resume and the same on 1 or N processes.
            g = generator_for(seed, position, stream=7_919)
            x = RandomCrop(self.image_shape[1:], padding=self.config.shift)(x, generator=g)
        return self._normalize(x[shard]), self.train_y[idx[shard]]

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return SPLITS if len(self.val_y) else ("test",)

    def split_images(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (N, C, H, W) in [0, 1], labels (N,)) of an evaluation split, before normalisation:
        a held-out split, or "train" (the images trained on, unaugmented)."""
        self.check_split(split)
        if split == "train":
            return self.train_x, self.train_y
        return (self.val_x, self.val_y) if split == "val" else (self.test_x, self.test_y)

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        x_all, y_all = self.split_images(split)
        move = Translate(*self.config.eval_shift) if any(self.config.eval_shift) else None
        for i in range(0, len(y_all), batch_size):
            x = x_all[i:i + batch_size]
            yield self._normalize(move(x) if move else x), y_all[i:i + batch_size]

    def step(self, model, batch):
        x, y = batch
        logits = model(x).float()  # (B, K); fp32 loss under autocast
        return F.cross_entropy(logits, y, reduction="none").mean()

    def evaluate_batch(self, model, batch):
        x, y = batch
        logits = model(x).float()  # (B, K)
        example_loss = F.cross_entropy(logits, y, reduction="none")  # (B,)
        return {"loss_sum": example_loss.sum().double(), "correct": (logits.argmax(-1) == y).sum().double(),
                "count": torch.tensor(float(y.numel()))}

    def predict(self, model, batch) -> torch.Tensor:
        """The predicted class of every image of an evaluation batch, (B,)."""
        return model(batch[0]).argmax(-1)

    def metrics(self, sums):
        n = count_from_sums(sums)
        return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n}

    def save(self, directory: Path) -> None:
        meta = {"classes": self.classes, "image_shape": list(self.image_shape),
                "mean": list(self.mean), "std": list(self.std)}
        write_text_atomic(Path(directory) / CLASSES_FILE, json.dumps(meta, indent=1) + "\n")
