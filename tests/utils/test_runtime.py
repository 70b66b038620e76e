"""eval_mode: evaluation mode inside the block, each submodule's own flag restored afterwards."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from archlab.utils.runtime import eval_mode


def _net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    net[1].eval()  # a frozen batch norm inside a model that trains: its flag must survive
    return net


def test_eval_mode_turns_dropout_off_and_gives_back_each_modules_flag():
    net, x = _net(), torch.randn(16, 4)
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
        assert torch.equal(net(x), net(x)), "dropout is off inside the block"
    assert [m.training for m in net.modules()] == [True, True, False, True, True]


def test_eval_mode_restores_the_flags_when_the_block_raises():
    net = _net().eval()
    net[3].train()
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(net):
            raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == [False, False, False, False, True]
