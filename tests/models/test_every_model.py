"""Every registered model, built small: it declares its capabilities, runs forward and backward on
the input its interface declares, and every parameter gets a gradient. A model fitted by its own
algorithm (its class declares ``fitted = True``: gradient-boosted trees) has no parameter to check:
it fits its example input and must then predict it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from archlab.models.interfaces import INTERFACES, Capability
from archlab.registry import create_model, list_models, model_config, model_info
from archlab.tasks import get_task, list_tasks

pytestmark = pytest.mark.usefixtures("one_thread")

# Small sizes by field name (a test's shortcut: the product itself never guesses field names).
SMALL = {
    "hidden_dim": 16, "d_model": 16, "hidden_size": 16, "embed_dim": 16,
    "num_heads": 2, "n_head": 2, "nhead": 2,
    "num_layers": 1, "n_layer": 1, "num_encoder_layers": 1, "num_decoder_layers": 1,
    "mlp_dim": 32, "intermediate_size": 32, "dim_feedforward": 32, "d_ff": 32,
    "max_position_embeddings": 32, "block_size": 16, "max_len": 32,
    "hidden": 32, "pool_size": 1, "width_mult": 0.25, "depth_mult": 0.3,
}


def small_config(name: str) -> dict:
    config = model_config(name)
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in SMALL and isinstance(value, (int, float)) and value:
            out[f.name] = SMALL[f.name]
        elif f.name in ("vocab_size", "src_vocab_size", "tgt_vocab_size") and value:
            out[f.name] = 40
        elif f.name == "widths":
            out[f.name] = tuple(max(4, w // 8) for w in value)
            out["stem_width"] = out[f.name][0]
    if "image_size" in out or hasattr(config, "image_size"):
        out["image_size"] = 2 * config.patch_size if hasattr(config, "patch_size") else 32
    if name.startswith("vgg"):
        out["layers"] = tuple(v if v == "M" else max(4, v // 16) for v in config.layers)
    return out


def tensors(x):
    """Every floating-point tensor in a model's output (a tensor, a tuple, a dataclass)."""
    if isinstance(x, torch.Tensor):
        return [x] if x.is_floating_point() else []
    if dataclasses.is_dataclass(x):
        return [t for f in dataclasses.fields(x) for t in tensors(getattr(x, f.name))]
    if isinstance(x, (tuple, list)):
        return [t for v in x for t in tensors(v)]
    return []


def declared(name):
    """The model of ``name`` built small, after checking what its registry entry declares."""
    entry = model_info(name)
    assert entry.interfaces, f"{name} declares no capability"
    assert all(issubclass(i, Capability) for i in entry.interfaces)
    assert dataclasses.is_dataclass(entry.config_class)
    torch.manual_seed(0)
    model = create_model(name, **small_config(name)).train()
    assert type(model) is entry.model_class and type(model.config) is entry.config_class
    assert model.fitted is entry.fitted
    return model


STEPPED = [n for n in list_models() if not model_info(n).fitted]
FITTED = [n for n in list_models() if model_info(n).fitted]


@pytest.mark.parametrize("name", STEPPED)
def test_every_model_runs_forward_and_backward_and_every_parameter_learns(name):
    model = declared(name)
    out = model(*model.example_input(batch_size=2))
    loss = sum(t.float().pow(2).mean() for t in tensors(out))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", FITTED)
def test_every_fitted_model_fits_its_example_input_and_predicts_it(name):
    model = declared(name)
    assert not list(model.parameters())  # nothing for an optimiser: the model is fitted instead
    args = model.example_input(batch_size=64)
    y = (args[0].flatten(1)[:, 0] > 0).long()  # two classes that the first input decides
    model.fit((*args, y), seed=0)
    out = model(*args)
    assert out.shape[0] == 64 and torch.isfinite(out).all()
    assert (out.argmax(-1) == y).float().mean() >= 0.9
    assert model.num_parameters() > 0  # what the fit learned (thresholds and leaf values for trees)


def test_some_model_is_fitted_and_some_is_trained_by_steps():
    assert STEPPED and FITTED


def test_every_interface_has_its_task_and_every_task_its_models():
    assert {i.task for i in INTERFACES} == set(list_tasks())
    for task in list_tasks():
        interface = get_task(task).requires
        assert interface in INTERFACES and interface.task == task
        assert [n for n in list_models() if task in model_info(n).tasks]  # someone can be trained
