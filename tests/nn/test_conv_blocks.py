"""The CNN blocks against their equations, written out with torch.nn.functional in float64."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError
from archlab.nn import TwoPath, set_impl
from archlab.nn.conv_blocks import (
    BasicBlock,
    Bottleneck,
    ConvNormAct,
    Inception,
    MBConv,
    SqueezeExcitation,
    StochasticDepth,
    ZeroPadShortcut,
    make_divisible,
)

TOL = dict(rtol=1e-10, atol=1e-10)  # float64: the blocks and the equations must agree to rounding


def _randomise_norms(module: nn.Module) -> nn.Module:
    """BN scale/shift away from 1/0, so a test would notice a missing or misplaced norm."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.5)
    return module.double()


def conv_bn(x, conv, bn, act=F.relu):
    """act(BN(W * x)) with batch statistics (training mode)."""
    h = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    h = F.batch_norm(h, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    return h if act is None else act(h)


def test_make_divisible_rounds_to_multiples_of_8_and_never_loses_more_than_10_percent():
    assert [make_divisible(v) for v in (32, 35.2, 16 * 1.1, 40 * 1.4, 112 * 1.8, 320 * 2.0, 4)] == \
        [32, 32, 16, 56, 200, 640, 8]
    # 0.9 rule: 12 -> nearest multiple 8 would lose a third, so it goes up to 16.
    assert make_divisible(12) == 16 and make_divisible(19) == 24


def test_conv_norm_act_is_conv_then_bn_then_activation_with_torchvision_names():
    block = _randomise_norms(ConvNormAct(4, 6, 3, stride=2, activation="silu"))
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    y = block(x)
    assert y.shape == (2, 6, 5, 5)  # padding "same" for k=3: (9 + 2 - 3) // 2 + 1
    torch.testing.assert_close(y, conv_bn(x, block[0], block[1], F.silu), **TOL)
    assert list(block.state_dict())[:3] == ["0.weight", "1.weight", "1.bias"]
    named = ConvNormAct(4, 6, 1, activation=None, names=("conv", "bn", "relu"))
    assert "conv.weight" in named.state_dict() and len(named) == 2  # no activation module
    assert named[0].bias is None  # the norm's shift replaces the conv bias


def test_conv_norm_act_rejects_an_unknown_activation():
    with pytest.raises(ConfigError, match=r"activation must be one of .*got 'tanhh'"):
        ConvNormAct(3, 8, activation="tanhh")


def test_basic_block_identity_shortcut_is_relu_of_f_plus_x():
    block = _randomise_norms(BasicBlock(8, 8))
    assert block.downsample is None
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    f = conv_bn(conv_bn(x, block.conv1, block.bn1), block.conv2, block.bn2, act=None)
    torch.testing.assert_close(block(x), F.relu(f + x), **TOL)


def test_basic_block_projection_shortcut_when_shape_changes():
    block = _randomise_norms(BasicBlock(8, 16, stride=2))
    proj = block.downsample
    assert proj[0].kernel_size == (1, 1) and proj[0].stride == (2, 2)
    assert sorted(block.state_dict())[:2] == ["bn1.bias", "bn1.num_batches_tracked"]
    assert "downsample.0.weight" in block.state_dict() and "downsample.1.running_var" in block.state_dict()
    x = torch.randn(2, 8, 7, 7, dtype=torch.float64)
    f = conv_bn(conv_bn(x, block.conv1, block.bn1), block.conv2, block.bn2, act=None)
    y = block(x)
    assert y.shape == (2, 16, 4, 4)
    torch.testing.assert_close(y, F.relu(f + conv_bn(x, proj[0], proj[1], act=None)), **TOL)


def test_zero_pad_shortcut_subsamples_and_appends_zero_channels_without_parameters():
    sc = ZeroPadShortcut(4, 10, stride=2)
    x = torch.randn(2, 4, 7, 7)
    y = sc(x)
    assert y.shape == (2, 10, 4, 4) and sum(p.numel() for p in sc.parameters()) == 0
    torch.testing.assert_close(y[:, :4], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert torch.count_nonzero(y[:, 4:]) == 0
    block = BasicBlock(4, 10, stride=2, shortcut="zero_pad")
    assert isinstance(block.downsample, ZeroPadShortcut)
    with pytest.raises(ConfigError, match="out_channels >= in_channels, got 2 < 4"):
        ZeroPadShortcut(4, 2, 1)


def test_plain_block_has_no_skip_and_no_projection():
    plain = _randomise_norms(BasicBlock(8, 16, stride=2, residual=False))
    assert plain.downsample is None
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    f = conv_bn(conv_bn(x, plain.conv1, plain.bn1), plain.conv2, plain.bn2, act=None)
    torch.testing.assert_close(plain(x), F.relu(f), **TOL)


def test_bottleneck_reduces_convolves_expands_with_stride_on_the_3x3():
    block = _randomise_norms(Bottleneck(16, 8, stride=2))
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)
    assert block.conv3.out_channels == 32  # expansion 4
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    h = conv_bn(conv_bn(x, block.conv1, block.bn1), block.conv2, block.bn2)
    f = conv_bn(h, block.conv3, block.bn3, act=None)
    s = conv_bn(x, block.downsample[0], block.downsample[1], act=None)
    torch.testing.assert_close(block(x), F.relu(f + s), **TOL)


def test_residual_block_rejects_an_unknown_shortcut():
    with pytest.raises(ConfigError, match=r"shortcut must be one of \('projection', 'zero_pad'\), got 'B'"):
        BasicBlock(8, 16, stride=2, shortcut="B")


def test_inception_concatenates_its_four_branches_in_order():
    block = _randomise_norms(Inception(8, 4, 3, 5, 2, 6, 7, ch5x5_kernel_size=5))
    assert block.branch3[1].conv.kernel_size == (5, 5)
    assert block.branch1.bn.eps == 1e-3  # torchvision's BasicConv2d
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    y = block(x)
    assert y.shape == (2, 4 + 5 + 6 + 7, 6, 6) and block.out_channels == 22
    pooled = F.max_pool2d(x, 3, stride=1, padding=1)
    b4 = conv_bn(pooled, block.branch4[1].conv, block.branch4[1].bn)
    b2 = conv_bn(conv_bn(x, block.branch2[0].conv, block.branch2[0].bn), block.branch2[1].conv, block.branch2[1].bn)
    torch.testing.assert_close(y[:, :4], conv_bn(x, block.branch1.conv, block.branch1.bn), **TOL)
    torch.testing.assert_close(y[:, 4:9], b2, **TOL)
    torch.testing.assert_close(y[:, 15:], b4, **TOL)


def test_squeeze_excitation_rescales_each_feature_map_by_its_gate():
    se = SqueezeExcitation(6, 2).double()
    x = torch.randn(3, 6, 5, 5, dtype=torch.float64)
    z = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    s = torch.sigmoid(F.conv2d(F.silu(F.conv2d(z, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias))
    torch.testing.assert_close(se(x), s * x, **TOL)


def test_stochastic_depth_drops_whole_examples_and_keeps_the_expectation():
    sd = StochasticDepth(0.25)
    x = torch.ones(4000, 3, 2, 2)
    sd.eval()
    assert torch.equal(sd(x), x)  # identity at evaluation
    sd.train()
    torch.manual_seed(1)
    y = sd(x)
    per_example = y.flatten(1)
    # each example is either dropped entirely or scaled by 1 / (1 - p)
    values = per_example.unique()
    assert len(values) == 2 and values[0] == 0 and abs(values[1].item() - 1 / 0.75) < 1e-6, values
    assert torch.all(per_example.min(1).values == per_example.max(1).values)
    dropped = (per_example[:, 0] == 0).float().mean().item()
    assert abs(dropped - 0.25) < 0.03, dropped
    assert abs(y.mean().item() - 1.0) < 0.05
    torch.manual_seed(1)
    assert torch.equal(sd(x), y)  # deterministic when seeded
    with pytest.raises(ConfigError, match="p must be in \\[0, 1\\), got 1.0"):
        StochasticDepth(1.0)


def test_mbconv_is_expand_depthwise_se_project_plus_skip():
    block = _randomise_norms(MBConv(16, 16, kernel_size=5, stride=1, expand_ratio=6))
    expand, depthwise, se, project = block.block
    assert expand[0].out_channels == 96 and depthwise[0].groups == 96 and depthwise[0].kernel_size == (5, 5)
    assert se.fc1.out_channels == 4  # max(1, in_channels // 4), from the block's input, not the expansion
    assert len(project) == 2 and block.use_res_connect  # linear bottleneck: no activation
    x = torch.randn(2, 16, 6, 6, dtype=torch.float64)  # training mode: BN uses batch statistics
    h = conv_bn(x, expand[0], expand[1], F.silu)
    h = conv_bn(h, depthwise[0], depthwise[1], F.silu)
    z = h.mean(dim=(2, 3), keepdim=True)  # (B, 96, 1, 1)
    h = h * torch.sigmoid(se.fc2(F.silu(se.fc1(z))))
    h = conv_bn(h, project[0], project[1], act=None)
    torch.testing.assert_close(block(x), x + h, **TOL)  # stochastic_depth_prob=0: the branch always stays


def test_mbconv_skips_the_expansion_at_ratio_1_and_the_residual_when_shapes_change():
    first = MBConv(32, 16, kernel_size=3, stride=1, expand_ratio=1)
    assert len(first.block) == 3 and not first.use_res_connect  # depthwise, SE, project
    strided = MBConv(16, 16, kernel_size=3, stride=2, expand_ratio=6, stochastic_depth_prob=0.5)
    assert not strided.use_res_connect
    x = torch.randn(2, 16, 8, 8)
    assert strided(x).shape == (2, 16, 4, 4)
    with pytest.raises(ConfigError, match="stride must be 1 or 2, got 3"):
        MBConv(16, 16, 3, 3, 6)


@pytest.mark.parametrize("make", [
    lambda: BasicBlock(8, 16, stride=2),
    lambda: Bottleneck(8, 4),
    lambda: Inception(8, 4, 3, 5, 2, 6, 7),
    lambda: MBConv(8, 8, 3, 1, 4, stochastic_depth_prob=0.2),
])
def test_blocks_run_under_bf16_autocast_and_every_parameter_gets_a_gradient(make):
    block = make()
    x = torch.randn(2, 8, 8, 8)
    torch.manual_seed(3)
    y32 = block(x)
    torch.manual_seed(3)  # same stochastic-depth draws
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x)
    # bf16 keeps ~3 significant digits; a few of them survive the block's BN and sums
    torch.testing.assert_close(y.float(), y32, rtol=0.1, atol=0.1)
    y.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


@pytest.mark.parametrize("make", [
    lambda: BasicBlock(4, 8, stride=2),
    lambda: Bottleneck(8, 4, stride=2),
    lambda: Inception(8, 4, 3, 5, 2, 6, 7),
    lambda: MBConv(8, 8, 5, 1, 4),
])
def test_reference_and_fused_paths_agree_forward_and_backward(make):
    fused = _randomise_norms(make())
    reference = set_impl(copy.deepcopy(fused), "reference")
    assert {m.impl for m in reference.modules() if isinstance(m, TwoPath)} == {"reference"}
    x = torch.randn(2, _in_channels(fused), 7, 7, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    x.requires_grad_()
    y_f, y_r = fused(x), reference(xr)
    torch.testing.assert_close(y_r, y_f, rtol=1e-9, atol=1e-9)  # float64: agree to rounding
    g = torch.randn_like(y_f)
    y_f.backward(g)
    y_r.backward(g)
    torch.testing.assert_close(xr.grad, x.grad, rtol=1e-9, atol=1e-9)
    for (name, p_f), p_r in zip(fused.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p_r.grad, p_f.grad, rtol=1e-9, atol=1e-9, msg=name)


def _in_channels(block: nn.Module) -> int:
    return next(m for m in block.modules() if isinstance(m, nn.Conv2d)).in_channels
