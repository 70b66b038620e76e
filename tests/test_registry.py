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
