"""T5's span-corruption task: spans by hand, inputs and targets that rebuild the text, a T5 that learns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sklearn
import torch

from archlab.errors import ConfigError
from archlab.registry import create_model, model_config, model_info
from archlab.tasks.span_corruption import (
    SpanCorruptionConfig, SpanCorruptionTask, corrupt_spans, random_segmentation,
)
from archlab.train import RunSpec, train

TINY_T5 = dict(d_model=64, d_kv=16, d_ff=128, num_heads=4, num_layers=2, num_decoder_layers=2, num_buckets=16,
               max_distance=32, dropout=0.0)

pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


@pytest.fixture(scope="module")
def prose(tmp_path_factory):
    """Real English: scikit-learn's descriptions of its data sets, about 43,000 characters."""
    descr = sorted((Path(sklearn.__file__).parent / "datasets" / "descr").glob("*.rst"))
    path = tmp_path_factory.mktemp("prose") / "prose.txt"
    path.write_text("\n".join(p.read_text(encoding="utf-8") for p in descr), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def task(prose):
    return SpanCorruptionTask(SpanCorruptionConfig(block_size=40), prose)


def rebuild(inputs: list[int], targets: list[int], sentinel_start: int) -> list[int]:
    """The original block: each sentinel of the input replaced by what follows it in the target."""
    spans, current = {}, None
    for t in targets:
        if t >= sentinel_start:
            current = t
            spans[current] = []
        else:
            spans[current].append(t)
    return [x for t in inputs for x in (spans[t] if t >= sentinel_start else [t])]


def test_the_papers_example_by_hand():
    # "Thank you for inviting me to your party last week ." with "for inviting" and "last" dropped.
    words = "Thank you for inviting me to your party last week .".split()
    ids = torch.arange(len(words))
    g = torch.Generator().manual_seed(0)
    inputs, targets = corrupt_spans(ids, num_noise=3, num_spans=2, sentinel_start=100, generator=g)
    assert len(inputs) == 11 - 3 + 2 and len(targets) == 3 + 2 + 1
    assert inputs.tolist().count(100) == inputs.tolist().count(101) == 1 and inputs[-1] == 101  # ends with a span
    assert targets[0] == 100 and targets[-1] == 102  # <s0> first, one sentinel more at the end
    assert rebuild(inputs.tolist(), targets.tolist(), 100) == ids.tolist()


def test_random_segmentation_is_k_positive_lengths_summing_to_n():
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        parts = random_segmentation(7, 3, g)
        assert len(parts) == 3 and parts.sum() == 7 and (parts >= 1).all()
        seen.add(tuple(parts.tolist()))
    assert len(seen) == 15  # every one of the C(6, 2) splits of 7 into 3 positive parts occurs


def test_batches_rebuild_the_text_and_follow_the_densities(task):
    c, s0 = task.config, task.sentinel_start
    assert (c.num_noise, c.num_spans) == (6, 2)  # round(40 * 0.15), round(6 / 3)
    inputs, targets = task.train_batch(5, 16, seed=0, shard=slice(0, 16))
    assert inputs.shape == (16, 40 - 6 + 2) and targets.shape == (16, 6 + 2 + 1)
    again = task.train_batch(5, 16, seed=0, shard=slice(0, 16))
    assert torch.equal(inputs, again[0]) and torch.equal(targets, again[1])  # a function of (seed, position)
    half = task.train_batch(5, 16, seed=0, shard=slice(8, 16))  # another process's share
    assert torch.equal(half[0], inputs[8:]) and torch.equal(half[1], targets[8:])
    text = task.train_tokens.tolist()
    for i, t in zip(inputs.tolist(), targets.tolist()):
        block = rebuild(i, t, s0)
        assert len(block) == 40 and any(text[k:k + 40] == block for k in range(len(text) - 39))
    words = task.tokenizer.decode(rebuild(inputs[0].tolist(), targets[0].tolist(), s0))
    assert len(words.split()) >= 20  # real text (punctuation is tokens of its own)
    # Where the spans fall differs from block to block.
    assert len({tuple((row >= s0).nonzero().flatten().tolist()) for row in inputs}) > 8


def fields(task, name):
    return task.model_fields(model_info(name).model_class, model_config(name))


def test_model_fields_share_one_vocabulary_with_the_sentinels(task, tmp_path):
    V = task.tokenizer.vocab_size + 3
    assert fields(task, "t5_small") == {"src_vocab_size": V, "tgt_vocab_size": V, "pad_id": 0, "bos_id": 1,
                                        "eos_id": 2, "share_vocab": True}
    # The Transformer's positional table: [bos] + the longer of input (40 - 6 + 2) and target (6 + 2 + 1) + eos.
    assert fields(task, "transformer") == {"src_vocab_size": V, "tgt_vocab_size": V, "pad_id": 0, "bos_id": 1,
                                           "eos_id": 2, "share_vocab": True, "max_len": 36 + 2}
    with pytest.raises(ConfigError, match="gpt cannot be trained for task span_corruption .* models that can: "
                                          "t5, t5_base, t5_small, transformer"):
        train(RunSpec(task="span_corruption", model="gpt", data=task.data, out=tmp_path / "never_written"))


@pytest.mark.parametrize("name", ["t5", "transformer"])
def test_the_loss_is_teacher_forced_cross_entropy_and_evaluation_sums_it(task, name):
    small = dict(TINY_T5) if name == "t5" else dict(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1,
                                                    dim_feedforward=64, dropout=0.0)
    torch.manual_seed(0)
    model = create_model(name, **small, **fields(task, name)).eval()
    assert model.src_embed is model.tgt_embed  # one vocabulary, one table
    src, tgt = task.train_batch(0, 8, seed=0, shard=slice(0, 8))
    # By hand: the decoder reads [bos] + target and is scored on target + [eos]; no padding anywhere.
    bos, eos = task.tokenizer.bos_id, task.tokenizer.eos_id
    decoder_in = torch.cat([torch.full((8, 1), bos), tgt], dim=1)
    target = torch.cat([tgt, torch.full((8, 1), eos)], dim=1)
    logits = model(src, decoder_in)
    by_hand = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
    assert torch.allclose(task.step(model, (src, tgt)), by_hand, atol=1e-6)
    sums = task.evaluate_batch(model, (src, tgt))
    assert sums["count"] == target.numel() and torch.allclose(sums["loss_sum"].float(), by_hand * target.numel())
    dropped = (target < task.sentinel_start) & (target != eos)
    assert sums["span_count"] == dropped.sum() == 8 * task.config.num_noise  # the dropped tokens, exactly
    assert sums["correct"] == (logits.argmax(-1) == target).sum()


def test_the_text_is_cut_in_order_into_train_val_and_test(task, prose):
    n = len(task.train_tokens) + len(task.val_tokens) + len(task.test_tokens)
    assert len(task.test_tokens) == int(n * 0.1) and len(task.val_tokens) == int(n * 0.05)
    assert task.eval_splits == ("val", "test")
    T = task.config.block_size
    for split, tokens in (("val", task.val_tokens), ("test", task.test_tokens)):
        batches = list(task.eval_batches(16, split))
        inputs = torch.cat([i for i, _ in batches])
        targets = torch.cat([t for _, t in batches])
        assert len(inputs) == len(tokens) // T  # consecutive blocks of that text, each corrupted once
        for k in (0, len(inputs) - 1):
            block = rebuild(inputs[k].tolist(), targets[k].tolist(), task.sentinel_start)
            assert block == tokens[k * T:(k + 1) * T].tolist()
    again = SpanCorruptionTask(SpanCorruptionConfig(block_size=40), prose)
    assert torch.equal(next(again.eval_batches(16, "test"))[0], next(task.eval_batches(16, "test"))[0])  # fixed
    no_val = SpanCorruptionTask(SpanCorruptionConfig(block_size=40, val_fraction=0.0), prose)
    assert no_val.eval_splits == ("test",) and len(no_val.test_tokens) == len(task.test_tokens)
    with pytest.raises(ConfigError, match="has no val split"):
        list(no_val.eval_batches(16, "val"))


def test_a_tiny_t5_learns_to_fill_in_spans(tmp_path, prose):
    out = tmp_path / "run"
    settings = {**TINY_T5, "block_size": 32, "batch_size": 16, "lr": 3e-3, "warmup_steps": 5, "max_steps": 30,
                "log_every": 5, "eval_batches": 4}
    result = train(RunSpec(task="span_corruption", model="t5", data=prose, out=out, settings=settings))
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["split"] == "train"]
    assert losses[-1] < 0.75 * losses[0], losses  # seen (seed 0): 0.64 of the first
    m = result["metrics"]
    assert set(m) == {"loss", "accuracy", "span_accuracy", "perplexity"}
    # Sentinels and eos are easy; of the dropped words themselves a 30-step model already gets some right.
    assert m["accuracy"] > 0.3 and m["span_accuracy"] > 0.08, m  # seen (seed 0): 0.49 and 0.15
    assert (out / "tokenizer.json").is_file()


def test_bad_settings_are_clear_errors(prose):
    with pytest.raises(ConfigError, match="noise_density must be in \\(0, 0.5\\), got 0.7"):
        SpanCorruptionConfig(noise_density=0.7)
    with pytest.raises(ConfigError, match="block_size must be >= 4, got 2"):
        SpanCorruptionConfig(block_size=2)
    with pytest.raises(ConfigError, match="needs at least 100000"):
        SpanCorruptionTask(SpanCorruptionConfig(block_size=100_000), prose)
