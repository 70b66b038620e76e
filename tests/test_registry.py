import json

import pytest
import torch

import archlab
from archlab.errors import ConfigError


def test_create_model_by_name_and_list():
    assert "mlp" in archlab.list_models()
    assert archlab.list_models("mlp") == ["mlp", "mlp_forecaster", "tabular_mlp"]  # the dense family, sorted
    assert archlab.list_models("boosting") == ["lightgbm"]
    m = archlab.create_model("mlp", in_features=64, num_classes=10, hidden=(32,))
    assert m.model_name == "mlp"
    assert m(torch.randn(3, 8, 8)).shape == (3, 10)


def test_unknown_model_and_field_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown model 'mpl'.*did you mean mlp"):
        archlab.create_model("mpl")
    with pytest.raises(ConfigError, match="no field.*widht.*valid fields"):
        archlab.create_model("mlp", widht=3)
    with pytest.raises(ConfigError, match="family must be one of"):
        archlab.list_models("cnnn")


def test_bad_input_names_expected_and_given():
    m = archlab.create_model("mlp", in_features=64)
    with pytest.raises(ConfigError, match="expects 64 input features.*got 784"):
        m(torch.randn(2, 1, 28, 28))


def test_model_index_file_is_current():
    from archlab.registry import INDEX_FILE, build_model_index

    assert json.loads(INDEX_FILE.read_text()) == build_model_index(), \
        "archlab/model_index.json is out of date: regenerate it with `python -m archlab.registry`"


def test_a_stale_model_index_falls_back_to_the_live_registry(tmp_path, monkeypatch):
    from archlab import registry

    stale = {"models_source_sha256": "0" * 64, "tasks": ["classify"],
             "models": [{"name": "ghost", "family": "cnn", "description": "", "tasks": ["classify"]}]}
    (tmp_path / "model_index.json").write_text(json.dumps(stale))
    monkeypatch.setattr(registry, "INDEX_FILE", tmp_path / "model_index.json")
    assert [m["name"] for m in registry.model_index()] == archlab.list_models()
    assert [m["name"] for m in registry.model_index("mlp")] == archlab.list_models("mlp")
    assert {"mlp", "mlp_forecaster"} <= set(archlab.list_models("mlp"))
    # A current stamp is trusted as it stands (that is what makes it fast).
    stale["models_source_sha256"] = registry.models_source_digest()
    (tmp_path / "model_index.json").write_text(json.dumps(stale))
    assert [m["name"] for m in registry.model_index()] == ["ghost"]
