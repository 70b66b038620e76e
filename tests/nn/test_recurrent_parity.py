"""archlab's RNN / LSTM / GRU (both paths) against torch.nn's: outputs, states and gradients in float64."""

import itertools

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archlab.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, set_impl
from archlab.utils.runtime import count_parameters

TOL = 1e-6  # float64; observed differences are ~1e-15
F_IN, H, T, B = 3, 4, 5, 3
LENGTHS = torch.tensor([3, 5, 2])  # unsorted on purpose

LAYERS = {  # name -> (archlab class, torch class, extra kwargs)
    "rnn_tanh": (RNN, nn.RNN, {}),
    "rnn_relu": (RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, nn.LSTM, {}),
    "lstm_proj": (LSTM, nn.LSTM, {"proj_size": 2}),
    "gru": (GRU, nn.GRU, {}),
    "gru_no_bias": (GRU, nn.GRU, {"bias": False}),
    "lstm_no_bias": (LSTM, nn.LSTM, {"bias": False}),
}


def _pair(name, num_layers, bidirectional, batch_first, impl):
    ours_cls, torch_cls, extra = LAYERS[name]
    ref = torch_cls(F_IN, H, num_layers, batch_first=batch_first, bidirectional=bidirectional,
                    dtype=torch.float64, **extra)
    ours = ours_cls.from_torch(ref)
    ours.impl = impl
    return ours, ref


def _initial_state(ref, batch):
    D = 2 if ref.bidirectional else 1
    P = ref.proj_size or ref.hidden_size
    h0 = torch.randn(ref.num_layers * D, batch, P, dtype=torch.float64, requires_grad=True)
    if isinstance(ref, nn.LSTM):
        c0 = torch.randn(ref.num_layers * D, batch, H, dtype=torch.float64, requires_grad=True)
        return (h0, c0)
    return h0


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def _run(module, x, hx, input_kind, batch_first, lengths=LENGTHS):
    """Forward, then gradients of a random-weighted loss w.r.t. input, initial state and weights."""
    if input_kind == "padded":
        out, state = module(x, hx)
        out_tensor = out
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first,
                                      enforce_sorted=(input_kind == "packed_sorted"))
        out, state = module(packed, hx)
        out_tensor, out_lengths = pad_packed_sequence(out, batch_first=batch_first)
        assert torch.equal(out_lengths, lengths)
    g = torch.Generator().manual_seed(1)
    loss = (out_tensor * torch.randn(out_tensor.shape, generator=g, dtype=out_tensor.dtype)).sum()
    for s in _flat(state):
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    wrt = [x] + (_flat(hx) if hx is not None else []) + list(module.parameters())
    grads = torch.autograd.grad(loss, wrt)
    return [out_tensor] + _flat(state), grads


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_equals_torch_forward_and_backward_in_every_setting(name, impl):
    torch.manual_seed(0)
    settings = itertools.product((1, 2), (False, True), (False, True), (False, True),
                                 ("padded", "packed_sorted", "packed_unsorted"))
    for num_layers, bidirectional, batch_first, given_state, input_kind in settings:
        if input_kind == "packed_sorted" and not batch_first:
            continue  # sorted packing is covered once; keeps the loop short
        where = (f"{name} impl={impl} layers={num_layers} bidirectional={bidirectional} "
                 f"batch_first={batch_first} h0={given_state} input={input_kind}")
        ours, ref = _pair(name, num_layers, bidirectional, batch_first, impl)
        lengths = LENGTHS.sort(descending=True).values if input_kind == "packed_sorted" else LENGTHS
        shape = (B, T, F_IN) if batch_first else (T, B, F_IN)
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        hx = _initial_state(ref, B) if given_state else None
        got, got_grads = _run(ours, x, hx, input_kind, batch_first, lengths)
        want, want_grads = _run(ref, x, hx, input_kind, batch_first, lengths)
        for a, b in zip(got, want):
            assert a.shape == b.shape, where
            assert torch.allclose(a, b, atol=TOL, rtol=0), f"{where}: max diff {(a - b).abs().max()}"
        assert len(got_grads) == len(want_grads)
        for a, b in zip(got_grads, want_grads):
            assert torch.allclose(a, b, atol=TOL, rtol=0), f"{where}: grad max diff {(a - b).abs().max()}"


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_unbatched_input_equals_torch(name, impl):
    ours, ref = _pair(name, 2, True, False, impl)
    x = torch.randn(T, F_IN, dtype=torch.float64)
    hx = _initial_state(ref, 1)
    hx = tuple(s.detach()[:, 0] for s in hx) if isinstance(hx, tuple) else hx.detach()[:, 0]
    for state in (None, hx):
        got, want = ours(x, state), ref(x, state)
        assert got[0].shape == (T, 2 * (ref.proj_size or H))
        for a, b in zip([got[0]] + _flat(got[1]), [want[0]] + _flat(want[1])):
            assert a.shape == b.shape and torch.allclose(a, b, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_state_dicts_interchange_both_ways_with_the_same_names_and_count(name):
    ours_cls, torch_cls, extra = LAYERS[name]
    ref = torch_cls(F_IN, H, 2, bidirectional=True, **extra)
    ours = ours_cls(F_IN, H, 2, bidirectional=True, **extra)
    assert list(ours.state_dict()) == list(ref.state_dict())  # same names, same order
    assert ("bias_hh_l1_reverse" in ours.state_dict()) == extra.get("bias", True)
    ours.load_state_dict(ref.state_dict())                    # torch -> archlab
    back = torch_cls(F_IN, H, 2, bidirectional=True, **extra)
    back.load_state_dict(ours.state_dict())                   # archlab -> torch
    x = torch.randn(T, B, F_IN)
    assert torch.allclose(back(x)[0], ref(x)[0], atol=1e-6, rtol=0)
    assert torch.allclose(ours.to_torch()(x)[0], ref(x)[0], atol=1e-6, rtol=0)
    assert count_parameters(ours) == count_parameters(ref)


def test_parameter_counts_follow_the_gate_formula():
    # per layer and direction: gates * H * (inputs + H + 2 biases); layer 1 reads both directions
    F, Hs = 10, 20
    lstm = LSTM(F, Hs, num_layers=2, bidirectional=True)
    assert count_parameters(lstm) == 2 * 4 * Hs * (F + Hs + 2) + 2 * 4 * Hs * (2 * Hs + Hs + 2) == 15040
    gru = GRU(F, Hs, num_layers=1)
    assert count_parameters(gru) == 3 * Hs * (F + Hs + 2) == 1920
    rnn = RNN(F, Hs, bias=False)
    assert count_parameters(rnn) == Hs * (F + Hs) == 600
    proj = LSTM(F, Hs, proj_size=5)  # W_hh reads the projected state; W_hr adds P x H
    assert count_parameters(proj) == 4 * Hs * (F + 5 + 2) + 5 * Hs == 1460
    assert count_parameters(proj) == count_parameters(nn.LSTM(F, Hs, proj_size=5))


def test_reset_parameters_is_uniform_within_one_over_sqrt_hidden():
    lstm = LSTM(F_IN, 16, num_layers=2)
    values = torch.cat([p.flatten() for p in lstm.parameters()])
    assert values.abs().max() <= 0.25 and values.abs().max() > 0.2  # bound 1/sqrt(16)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_dropout_is_between_layers_only_and_in_training_only(name, impl):
    # dropout=1 zeroes layer 0's output, deterministically: torch and archlab must agree exactly
    ours_cls, torch_cls, extra = LAYERS[name]
    ref = torch_cls(F_IN, H, 2, dropout=1.0, dtype=torch.float64, **extra).train()
    ours = ours_cls.from_torch(ref)
    ours.impl = impl
    x = torch.randn(T, B, F_IN, dtype=torch.float64)
    assert torch.allclose(ours(x)[0], ref(x)[0], atol=TOL, rtol=0)
    # ... and the output is then independent of the input
    assert torch.allclose(ours(x)[0], ours(torch.randn_like(x))[0], atol=TOL, rtol=0)
    # in eval mode dropout is off
    ours.eval(), ref.eval()
    assert torch.allclose(ours(x)[0], ref(x)[0], atol=TOL, rtol=0)
    assert not torch.allclose(ours(x)[0], ours(torch.randn_like(x))[0], atol=1e-3)
    # p=0.5 in training: the last layer's output is not dropped (no exact zeros)
    ours.dropout = 0.5
    ours.train()
    out, _ = ours(x)
    assert (out != 0).all()
    ours.eval()
    assert not torch.allclose(ours.train()(x)[0], ours.eval()(x)[0], atol=1e-6)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell_name", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cells_equal_torch_cells_forward_and_backward(cell_name, impl):
    ours_cls, torch_cls, extra = {
        "rnn_tanh": (RNNCell, nn.RNNCell, {}), "rnn_relu": (RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
        "lstm": (LSTMCell, nn.LSTMCell, {}), "gru": (GRUCell, nn.GRUCell, {}),
    }[cell_name]
    for bias, batched, given_state in itertools.product((True, False), (True, False), (True, False)):
        ref = torch_cls(F_IN, H, bias=bias, dtype=torch.float64, **extra)
        ours = ours_cls.from_torch(ref)
        ours.impl = impl
        assert list(ours.state_dict()) == list(ref.state_dict())
        lead = (B,) if batched else ()
        x = torch.randn(*lead, F_IN, dtype=torch.float64, requires_grad=True)
        hx = None
        if given_state:
            hx = torch.randn(*lead, H, dtype=torch.float64, requires_grad=True)
            if cell_name == "lstm":
                hx = (hx, torch.randn(*lead, H, dtype=torch.float64, requires_grad=True))
        wrt = [x] + (_flat(hx) if hx is not None else [])
        results = []
        for m in (ours, ref):
            out = _flat(m(x, hx))
            loss = sum((o * torch.arange(o.numel(), dtype=o.dtype).reshape(o.shape)).sum() for o in out)
            results.append((out, torch.autograd.grad(loss, wrt + list(m.parameters()))))
        for a, b in zip(results[0][0] + list(results[0][1]), results[1][0] + list(results[1][1])):
            assert a.shape == b.shape and torch.allclose(a, b, atol=TOL, rtol=0), (bias, batched, given_state)


def test_set_impl_switches_every_recurrent_block_in_a_model():
    model = nn.Sequential(LSTMCell(3, 4), GRU(3, 4))
    set_impl(model, "reference")
    assert [m.impl for m in model] == ["reference", "reference"]
    assert "impl='reference'" in repr(model[1])


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_runs_under_bf16_autocast_close_to_float32(cls, impl):
    m = cls(F_IN, 8, num_layers=2)
    m.impl = impl
    x = torch.randn(T, B, F_IN, requires_grad=True)
    want = m(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = m(x)
    assert torch.isfinite(out).all()
    assert torch.allclose(out.float(), want, atol=5e-2), (out.float() - want).abs().max()
    out.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cls", [LSTMCell, GRUCell, RNNCell])
def test_cells_run_under_bf16_autocast_close_to_float32(cls, impl):
    cell = cls(F_IN, 8)
    cell.impl = impl
    x = torch.randn(B, F_IN)
    want = _flat(cell(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _flat(cell(x))
    for a, b in zip(got, want):
        assert torch.allclose(a.float(), b, atol=2e-2), (a.float() - b).abs().max()


def test_seeded_runs_with_dropout_are_deterministic():
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        m = LSTM(F_IN, H, 2, dropout=0.5)
        m.impl = "reference"
        outs.append(m(torch.randn(T, B, F_IN))[0])
    assert torch.equal(outs[0], outs[1])
