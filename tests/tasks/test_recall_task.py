"""The recall task: sequences, labels, exact resume, and models that learn it across a short gap."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archlab.errors import ConfigError
from archlab.models.bert import Bert
from archlab.models.interfaces import TokenClassifier
from archlab.models.seq_classifier import SeqClassifier
from archlab.registry import create_model, model_config
from archlab.tasks import get_task
from archlab.tasks.recall import RecallConfig, RecallTask
from archlab.train import RunSpec, train

pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


def test_only_the_first_symbol_carries_the_label():
    task = RecallTask(RecallConfig(gap=7, num_symbols=3, num_distractors=5, test_size=200))
    assert get_task("recall") is RecallTask and task.vocab_size == 1 + 3 + 5
    x, mask, y = task.train_batch(0, 64, seed=0, shard=slice(0, 64))
    assert x.shape == (64, 8) and mask.all() and y.shape == (64,)
    assert torch.equal(x[:, 0], y + 1)                        # symbols are 1..K
    assert ((x[:, 1:] >= 4) & (x[:, 1:] <= 8)).all()          # distractors are K+1..K+N, never a symbol
    assert set(y.tolist()) == {0, 1, 2}
    # The distractors are independent of the label: their mean is the same for every class.
    many = task.draw(20_000, torch.Generator().manual_seed(1))
    means = [many[0][many[1] == k, 1:].float().mean().item() for k in range(3)]
    assert max(means) - min(means) < 0.02


def test_batches_depend_on_seed_and_position_only_and_the_test_set_is_fixed():
    task = RecallTask(RecallConfig(gap=5))
    a = task.train_batch(3, 16, seed=1, shard=slice(0, 16))
    assert torch.equal(a[0], task.train_batch(3, 16, seed=1, shard=slice(0, 16))[0])
    assert not torch.equal(a[0], task.train_batch(4, 16, seed=1, shard=slice(0, 16))[0])
    assert torch.equal(task.train_batch(3, 16, seed=1, shard=slice(8, 16))[0], a[0][8:])  # shards of one batch
    other = RecallTask(RecallConfig(gap=5))
    assert torch.equal(other.test_x, task.test_x) and len(task.test_y) == 1000


def test_model_fields_come_from_the_token_classifier_and_bad_settings_are_refused():
    task = RecallTask(RecallConfig(num_symbols=6, num_distractors=2))
    assert RecallTask.requires is TokenClassifier
    assert task.model_fields(SeqClassifier, model_config("rnn_classifier")) == {
        "num_classes": 6, "vocab_size": 9, "pad_id": 0}
    assert task.model_fields(Bert, model_config("bert")) == {
        "num_labels": 6, "vocab_size": 9, "pad_token_id": 0, "head": "classification"}
    with pytest.raises(ConfigError, match="mlp cannot be trained for task recall"):
        train(RunSpec(task="recall", model="mlp", out=Path("unused")))
    with pytest.raises(ConfigError, match="num_symbols must be >= 2"):
        RecallConfig(num_symbols=1)
    with pytest.raises(ConfigError, match="gap must be an integer >= 0, got -1"):
        RecallConfig(gap=-1)
    with pytest.raises(ConfigError, match="makes its own sequences"):
        RecallTask(RecallConfig(), "mnist5k")


def test_evaluation_sums_count_the_test_set_and_training_returns_the_mean_loss():
    task = RecallTask(RecallConfig(gap=3, num_symbols=4, test_size=50))
    model = create_model("rnn_classifier", **task.model_fields(SeqClassifier, model_config("rnn_classifier")),
                         hidden_size=8, embed_dim=4)
    batch = task.train_batch(0, 16, seed=0, shard=slice(0, 16))
    loss = task.step(model, batch)
    assert loss.dim() == 0 and loss.requires_grad
    with torch.no_grad():
        sums = [task.evaluate_batch(model, b) for b in task.eval_batches(32)]
    assert sum(float(s["count"]) for s in sums) == 50
    metrics = task.metrics({k: sum(float(s[k]) for s in sums) for k in task.sum_keys})
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0


def test_an_lstm_learns_to_recall_across_a_short_gap(tmp_path):
    settings = {"gap": 5, "cell": "lstm", "hidden_size": 32, "embed_dim": 8, "batch_size": 32, "lr": 1e-2,
                "max_steps": 150, "log_every": 50}
    result = train(RunSpec(task="recall", model="rnn_classifier", out=tmp_path / "run", settings=settings))
    assert result["metrics"]["accuracy"] >= 0.9  # chance is 25%


def test_the_validation_set_is_its_own_fixed_draw_and_can_be_turned_off():
    task = RecallTask(RecallConfig(gap=3, test_size=50, val_size=40))
    again = RecallTask(RecallConfig(gap=3, test_size=50, val_size=0))
    assert task.eval_splits == ("val", "test") and again.eval_splits == ("test",)
    assert torch.equal(task.test_x, again.test_x)  # the test set does not depend on val_size
    val = torch.cat([b[0] for b in task.eval_batches(16, "val")])
    assert val.shape == (40, 4) and not torch.equal(val, task.test_x[:40])
    with pytest.raises(ConfigError, match="has no val split"):
        next(again.eval_batches(8, "val"))
    with pytest.raises(ConfigError, match="split must be one of val, test for task 'recall', got 'train'"):
        next(task.eval_batches(8, "train"))
