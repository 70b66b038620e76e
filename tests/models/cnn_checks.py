"""Checks shared by the tests of the ImageNet CNNs (ResNet, GoogLeNet, EfficientNet).

``torchvision_facts.json`` (torchvision 0.29.1's parameter count and state_dict names/shapes per
model) lives outside the repository, in the project's shared data folder; the layout comparison
skips when it is not there, the published counts are asserted regardless.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import archlab

REPO = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def _facts() -> dict | None:
    candidates = [os.environ.get("ARCHLAB_TORCHVISION_FACTS", "")]
    candidates += [str(p / "shared" / "data" / "torchvision_facts.json") for p in REPO.parents]
    for c in candidates:
        if c and Path(c).is_file():
            return json.loads(Path(c).read_text())
    return None


def torchvision_layout(name: str) -> dict:
    """{"params": int, "state_dict": {name: shape}} of torchvision's model, or skip the test."""
    facts = _facts()
    if facts is None:
        pytest.skip("torchvision_facts.json not found (shared data folder or $ARCHLAB_TORCHVISION_FACTS)")
    return facts[name]


def build_on_meta(name: str, **config) -> nn.Module:
    """The architecture without memory or initialisation cost: shapes and counts only."""
    with torch.device("meta"):
        return archlab.create_model(name, **config)


def layout(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def assert_torchvision_layout(name: str) -> None:
    expected = torchvision_layout(name)
    model = build_on_meta(name)
    ours = layout(model)
    missing = sorted(set(expected["state_dict"]) - set(ours))
    extra = sorted(set(ours) - set(expected["state_dict"]))
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    wrong = {k: (ours[k], v) for k, v in expected["state_dict"].items() if ours[k] != v}
    assert not wrong, f"shape mismatches (ours, torchvision): {dict(list(wrong.items())[:5])}"
    assert list(ours) == list(expected["state_dict"])  # same order, too
    assert sum(p.numel() for p in model.parameters()) == expected["params"]


def assert_every_parameter_learns(model: nn.Module, x: torch.Tensor, loss_fn=None) -> None:
    """One forward and backward pass in training mode; every parameter gets a non-zero gradient."""
    model.train()
    out = model(x) if loss_fn is None else None
    loss = out.float().logsumexp(dim=1).mean() if loss_fn is None else loss_fn(model, x)
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
            or p.grad.abs().sum() == 0]
    assert not dead, f"{len(dead)} parameters got no gradient: {dead[:5]}"


def assert_pretrained_loads_with_new_head_and_grey_input(name: str, size: int, **config) -> None:
    """A torchvision-layout state_dict (1000 classes, RGB) loads into a 1-channel, 7-class model.

    The RGB filters of the first conv are summed for one channel, so a grey image ``g`` gives the new
    model the same feature map that ``(g, g, g)`` gives the original: an exact check of the adaptation.
    """
    from archlab.models.cnn_base import load_pretrained

    torch.manual_seed(0)
    source = archlab.create_model(name, **config).eval()
    target = archlab.create_model(name, num_classes=7, in_channels=1, **config).eval()
    report = load_pretrained(target, source.state_dict())
    head = target.classifier_name()
    assert report.new_head == [f"{head}.weight", f"{head}.bias"]
    assert report.adapted_input is not None and report.adapted_input.endswith("weight")
    grey = torch.randn(2, 1, size, size)
    with torch.no_grad():
        torch.testing.assert_close(target.forward_features(grey), source.forward_features(grey.expand(-1, 3, -1, -1)),
                                   rtol=1e-4, atol=1e-4)  # float32, summation order differs
        assert target(grey).shape == (2, 7)


TORCHVISION_OUTPUTS = REPO / "tests" / "fixtures" / "torchvision_outputs.npz"


def assert_matches_torchvision_outputs(name: str, *, atol: float = 1e-9, **config) -> float:
    """Our model, weights set by the fixture's formula, gives torchvision's logits (float64).

    The reference logits come from torchvision 0.29.1 (``tests/fixtures/make_torchvision_outputs.py``).
    ``atol`` is the largest absolute difference allowed (logits are O(1): a wiring or layout error
    shows as O(1) differences). Returns the largest absolute difference.
    """
    import numpy as np

    from tests.fixtures.deterministic_weights import comparison_mode, deterministic_input, set_deterministic_weights

    expected = torch.from_numpy(np.load(TORCHVISION_OUTPUTS)[name])
    model = comparison_mode(set_deterministic_weights(archlab.create_model(name, **config)))
    with torch.no_grad():
        logits = model(deterministic_input())
    # float64 on both sides; only the order of summation inside the kernels may differ
    torch.testing.assert_close(logits, expected, rtol=0.0, atol=atol)
    return (logits - expected).abs().max().item()
