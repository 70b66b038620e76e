import json

import pytest
import torch

import archlab
from archlab.checkpoint import unwrap
from archlab.errors import CheckpointError


def test_save_and_load_round_trip(tmp_path):
    m = archlab.create_model("mlp", in_features=16, hidden=(8, 4), num_classes=3).eval()
    m.save_pretrained(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["archlab_model"] == "mlp" and cfg["config"]["hidden"] == [8, 4]
    m2 = archlab.from_pretrained(tmp_path / "ck")
    assert m2.config.hidden == (8, 4)  # tuples come back as tuples
    x = torch.randn(5, 16)
    torch.testing.assert_close(m(x), m2(x), rtol=0, atol=0)


def test_saves_unwrapped_module_of_compiled_model(tmp_path):
    m = archlab.create_model("mlp", in_features=4, hidden=(4,), num_classes=2)
    compiled = torch.compile(m)
    assert unwrap(compiled) is m
    archlab.checkpoint.save_pretrained(compiled, tmp_path)
    assert set(archlab.checkpoint.load_state_dict(tmp_path)) == set(m.state_dict())


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        archlab.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no config.json"):
        archlab.from_pretrained(tmp_path)
    m = archlab.create_model("mlp", in_features=16, hidden=(8,), num_classes=3)
    m.save_pretrained(tmp_path)
    w = tmp_path / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        archlab.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "unknown-thing"}))
    with pytest.raises(CheckpointError, match="model_type='unknown-thing'"):
        archlab.from_pretrained(tmp_path)
