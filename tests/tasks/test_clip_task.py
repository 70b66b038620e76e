"""The clip task: caption draws, exact retrieval and zero-shot sums, and a tiny CLIP that learns the digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from archlab.errors import ConfigError
from archlab.models.interfaces import contrastive_loss
from archlab.registry import create_model, model_config, model_info
from archlab.tasks.clip import CLIP_FILE, CLIPTask, CLIPTaskConfig, linear_probe_correct, retrieval_hits
from archlab.train import RunSpec, evaluate, train
from archlab.train.evaluation import load_for_evaluation

pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py

SMALL = dict(embed_dim=32, vision_width=32, vision_layers=2, vision_heads=4, vision_mlp=64, text_width=32,
             text_layers=1, text_heads=4, text_mlp=64)


@pytest.fixture(scope="module")
def task():
    return CLIPTask(CLIPTaskConfig(), "mnist5k")


def test_each_visit_draws_one_of_the_images_captions(task):
    images, ids = task.train_batch(3, 32, seed=0, shard=slice(0, 32))
    assert images.shape == (32, 1, 28, 28) and ids.dtype == torch.long and ids.size(0) == 32
    again = task.train_batch(3, 32, seed=0, shard=slice(0, 32))
    assert torch.equal(images, again[0]) and torch.equal(ids, again[1])  # a function of (seed, position)
    half = task.train_batch(3, 32, seed=0, shard=slice(16, 32))  # another process's share
    assert torch.equal(half[0], images[16:]) and torch.equal(half[1], ids[16:, : half[1].size(1)])
    idx = task._order.batch(3, 32, 0)
    tok = task.tokenizer
    for row, i in zip(ids.tolist(), idx.tolist()):
        assert row[0] == tok.bos_id and tok.eos_id in row  # [bos] words [eos], then padding
        assert tok.decode(row) in task.data_set.train_captions[i]  # one of this image's own captions
    # Over many visits an image is described by several templates.
    seen = set()
    for p in range(0, 2000, 125):  # position p + 125 starts a new epoch: the same images come back
        b_ids = task.train_batch(p, 32, 0, slice(0, 32))[1]
        first = task._order.batch(p, 32, 0)[0].item()
        seen.add((first, tok.decode(b_ids[0].tolist())))
    assert len({c for _, c in seen}) > 5


def fields(task, name, **config):
    return task.model_fields(model_info(name).model_class, model_config(name, **config))


def test_model_fields_come_from_the_data(task, tmp_path):
    assert fields(task, "clip_tiny") == {"in_channels": 1, "image_size": 28, "text_vocab_size": task.tokenizer.vocab_size,
                                         "pad_id": 0, "eos_id": 2, "context_length": 8}
    #                                    the longest caption: [bos] the number seven written by hand [eos]
    with pytest.raises(ConfigError, match="text_tower='minilm' reads all-MiniLM-L6-v2's WordPiece ids, the captions "
                                          "are tokenized by 'word': add --set tokenizer=minilm"):
        fields(task, "clip_tiny", text_tower="minilm")
    with pytest.raises(ConfigError, match="vit_tiny cannot be trained for task clip .* models that can: clip, clip_tiny"):
        train(RunSpec(task="clip", model="vit_tiny", out=tmp_path / "never_written"))


def test_retrieval_hits_are_exact_by_hand():
    # Three queries, three candidates; groups 0, 0, 1 (the first two say the same thing).
    sims = torch.tensor([[0.1, 0.9, 0.0],    # best: candidate 1, same group as query 0 -> a hit
                         [0.2, 0.1, 0.7],    # best: candidate 2, another group; 2nd best 0 is in its group
                         [0.5, 0.4, 0.3]])   # best and 2nd: group 0; 3rd: its own
    groups = torch.tensor([0, 0, 1])
    assert [h.item() for h in retrieval_hits(sims, groups, k=1)] == [1, 1]
    assert [h.item() for h in retrieval_hits(sims, groups, k=2)] == [1, 2]
    assert [h.item() for h in retrieval_hits(sims, groups, k=3)] == [1, 3]


def test_linear_probe_reads_a_separable_embedding():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    x = torch.nn.functional.one_hot(y, 4).float() + 0.1 * torch.randn(200, 4, generator=g)
    assert linear_probe_correct(x[:150], y[:150], x[150:], y[150:]) == 50


def test_the_validation_images_leave_the_training_split(task):
    from archlab.data import load_captioned_images
    from archlab.data.captions import digit_captions

    full = load_captioned_images("mnist5k")
    v, d = task.val_set, task.data_set
    assert len(v.images) + len(d.train_images) == len(full.train_images) == 4000
    # 10% of each digit, rounded, held out (stratified); none of them is trained on.
    assert torch.equal(torch.bincount(v.labels, minlength=10),
                       torch.round(0.1 * torch.bincount(full.train_labels, minlength=10).double()).long())
    train_rows = {x.numpy().tobytes() for x in d.train_images}
    assert not any(x.numpy().tobytes() in train_rows for x in v.images)
    assert all(c in digit_captions(int(y)) for c, y in zip(v.captions, v.labels))  # one of its training captions
    assert torch.equal(v.groups, v.labels)
    (batch,) = task.eval_batches(256, "val")
    assert batch[0].shape == (400, 1, 28, 28) and batch[1].size(0) == 400 and len(batch[5]) == 3600  # probe: train
    assert torch.equal(CLIPTask(CLIPTaskConfig(), "mnist5k").val_set.images, v.images)  # the same for every run
    no_val = CLIPTask(CLIPTaskConfig(val_fraction=0.0), "digits")
    assert no_val.eval_splits == ("test",) and len(no_val.data_set.train_images) == 1438
    with pytest.raises(ConfigError, match="has no val split"):
        list(no_val.eval_batches(256, "val"))


def test_evaluation_embeds_the_whole_test_split_once(task):
    model = create_model("clip_tiny", **SMALL, **fields(task, "clip_tiny"))
    batches = list(task.eval_batches(256))
    assert len(batches) == 1 and batches[0][0].shape == (1000, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        sums = task.evaluate_batch(model, batches[0])
    assert set(sums) == set(task.sum_keys)
    # Training: the interface's symmetric InfoNCE loss of a batch of matching pairs.
    images, ids = task.train_batch(0, 16, seed=0, shard=slice(0, 16))
    with torch.no_grad():
        loss = contrastive_loss(model(images, ids).logits_per_image)
        assert torch.allclose(task.step(model, (images, ids)), loss, atol=1e-6)
    m = task.metrics({k: float(sums[k]) for k in task.sum_keys})
    assert m["eval_count"] == 1000 and set(m) == {"loss", "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5",
                                                  "zero_shot_accuracy", "probe_accuracy", "eval_count"}
    assert m["i2t_r1"] <= m["i2t_r5"] and m["t2i_r1"] <= m["t2i_r5"]
    # An untrained model: zero-shot near chance, but the random image tower already carries some signal.
    assert m["zero_shot_accuracy"] < 0.3 and m["probe_accuracy"] > 0.5, m


@pytest.mark.slow
def test_a_tiny_clip_learns_the_digits_and_its_checkpoint_evaluates(tmp_path):
    out = tmp_path / "run"
    settings = {**SMALL, "batch_size": 64, "lr": 3e-3, "warmup_steps": 10, "max_steps": 120, "log_every": 20}
    result = train(RunSpec(task="clip", model="clip_tiny", data="mnist5k", out=out, settings=settings))
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["split"] == "train"]
    assert losses[-1] < 0.85 * losses[0], losses  # seen (seed 0): 0.75 of the first
    m = result["metrics"]
    assert m["zero_shot_accuracy"] > 0.4 and m["t2i_r1"] > 0.5, m  # seen (seed 0): 0.58 and 0.71
    assert (out / CLIP_FILE).is_file()
    assert evaluate(out, batch_size=256) == pytest.approx(m)
    model, again = load_for_evaluation(out)
    assert again.tokenizer == CLIPTask(CLIPTaskConfig(), "mnist5k").tokenizer


def test_a_folder_of_captioned_images_trains_without_labels(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(40):  # stripes: horizontal or vertical, said in words
        a = np.zeros((8, 8), dtype=np.uint8)
        if i % 2:
            a[:, ::2] = 255
        else:
            a[::2, :] = 255
        a = np.clip(a + rng.integers(0, 40, a.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a, mode="L").save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png\t{'vertical' if i % 2 else 'horizontal'} stripes")
    (tmp_path / "captions.tsv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    settings = {**SMALL, "patch_size": 4, "batch_size": 16, "lr": 3e-3, "max_steps": 30, "log_every": 10}
    m = train(RunSpec(task="clip", model="clip_tiny", data=str(tmp_path), out=out, settings=settings))["metrics"]
    assert "zero_shot_accuracy" not in m and "probe_accuracy" not in m  # no labels: retrieval only
    assert m["eval_count"] == 8 and m["i2t_r1"] >= 0.75, m  # two kinds of caption, easily told apart


def test_bad_settings():
    with pytest.raises(ConfigError, match="tokenizer must be one of \\('word', 'minilm'\\), got 'bpe'"):
        CLIPTaskConfig(tokenizer="bpe")
