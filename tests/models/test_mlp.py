"""The MLP baseline: exact parameter counts and batch norm before each ReLU."""

from __future__ import annotations

import torch

from archlab.nn import BatchNorm1d
from archlab.registry import create_model
from archlab.utils.runtime import count_parameters


def test_batch_norm_adds_gamma_and_beta_per_hidden_unit():
    plain = create_model("mlp", in_features=20, num_classes=3, hidden=(16, 8))
    normed = create_model("mlp", in_features=20, num_classes=3, hidden=(16, 8), batch_norm=True)
    assert count_parameters(plain) == (20 * 16 + 16) + (16 * 8 + 8) + (8 * 3 + 3)
    assert count_parameters(normed) - count_parameters(plain) == 2 * (16 + 8)  # gamma and beta
    assert [type(m) for m in normed.features][:3] == [torch.nn.Linear, BatchNorm1d, torch.nn.ReLU]


def test_batch_norm_standardises_each_pre_activation_over_the_batch():
    torch.manual_seed(0)
    model = create_model("mlp", in_features=20, num_classes=3, hidden=(16,), batch_norm=True, dropout=0.0).double()
    x = 5 + 3 * torch.randn(64, 20, dtype=torch.float64)
    seen = {}
    model.features[2].register_forward_hook(lambda m, args, out: seen.setdefault("pre_relu", args[0]))
    model.train()(x)
    u = seen["pre_relu"]  # BN(W x + b): gamma = 1, beta = 0 at initialisation
    torch.testing.assert_close(u.mean(0), torch.zeros(16, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(u.var(0, unbiased=False), torch.ones(16, dtype=torch.float64), atol=1e-3, rtol=0)
