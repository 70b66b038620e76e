"""Checkpoint files: RNG states round-trip, manifests catch damage, old checkpoints are pruned."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import archlab
from archlab.errors import CheckpointError
from archlab.tasks.classify import ClassifyConfig, ClassifyTask
from archlab.train import checkpointing as ckpt


def draws():
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    state = ckpt.rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = draws()
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    second = draws()
    assert first[:3] == second[:3] and torch.equal(first[3], second[3])


@pytest.fixture(scope="module")
def task():
    return ClassifyTask(ClassifyConfig(), "digits")


def write(run_dir, step, task, keep_last=2):
    model = archlab.create_model("mlp", in_features=64, hidden=(8,), num_classes=10)
    return ckpt.save_checkpoint(run_dir, step, model, task, {"step": step}, keep_last)


def test_keep_last_and_leftovers(tmp_path, task):
    for step in (10, 20, 30):
        write(tmp_path, step, task)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000020", "step-00000030"]
    leftover = tmp_path / "checkpoints" / ".tmp-step-00000040-999"
    leftover.mkdir()
    ckpt.remove_unfinished(tmp_path)
    assert not leftover.exists()
    saved = ckpt.latest_checkpoint(tmp_path)
    assert saved.name == "step-00000030"
    assert {"config.json", "model.safetensors", "trainer_state.pt", "task.json", "classes.json",
            "manifest.json"} == {p.name for p in saved.iterdir()}
    assert archlab.from_pretrained(saved).config.hidden == (8,)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:-10]), "has .* bytes, the manifest says .* \\(truncated\\?\\)"),
    (lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]), "fails its SHA-256 check"),
    (lambda p: p.unlink(), "is incomplete: trainer_state.pt is missing"),
], ids=["truncated", "altered", "missing"])
def test_damage_is_detected_and_the_previous_checkpoint_used(tmp_path, task, damage, message):
    write(tmp_path, 1, task)
    newest = write(tmp_path, 2, task)
    damage(newest / ckpt.STATE_FILE)
    with pytest.raises(CheckpointError, match=message):
        ckpt.verify(newest)
    warnings = []
    assert ckpt.latest_checkpoint(tmp_path, warn=warnings.append).name == "step-00000001"
    assert len(warnings) == 1 and "falling back to the previous checkpoint" in warnings[0]


def test_a_foreign_pickle_is_refused(tmp_path, task):
    saved = write(tmp_path, 1, task)
    torch.save({"step": 1, "evil": object.__new__(ClassifyConfig)}, saved / ckpt.STATE_FILE)
    with pytest.raises(CheckpointError, match="unreadable"):
        ckpt.load_state(saved)  # weights_only=True refuses to build arbitrary objects
