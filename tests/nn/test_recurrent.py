"""Recurrent blocks: step hooks (gates, h_t, dL/dh_t), truncated BPTT, and errors on bad input."""

import re

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

from archlab.errors import ConfigError
from archlab.nn import (
    GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, clip_grad_norm_, detach_state, hidden_grad_norms,
    pack_padded, record_steps, time_chunks, truncated_bptt,
)

TOL = 1e-10  # float64, same operations in another order
F_IN, H, T, B = 3, 4, 6, 2


def _by(records, layer, direction):
    return [r for r in records if r.layer == layer and r.direction == direction]


# ---- step hooks -----------------------------------------------------------------------------------

def test_recorded_lstm_gates_states_and_outputs_are_the_equations():
    lstm = LSTM(F_IN, H, num_layers=2, bidirectional=True, dtype=torch.float64)  # fused by default
    x = torch.randn(T, B, F_IN, dtype=torch.float64)
    fused_out, (fused_h, _) = lstm(x)
    with record_steps(lstm) as steps:
        out, (h_n, c_n) = lstm(x)
    assert torch.allclose(out, fused_out, atol=TOL) and torch.allclose(h_n, fused_h, atol=TOL)
    assert len(steps) == 2 * 2 * T
    assert [r.t for r in _by(steps, 0, 1)] == list(range(T - 1, -1, -1))  # reverse runs backwards

    # layer 0, forward: recompute every gate from seed 003's equations with the named weight blocks
    W_ii, W_if, W_ig, W_io = lstm.weight_ih_l0.chunk(4)
    W_hi, W_hf, W_hg, W_ho = lstm.weight_hh_l0.chunk(4)
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    b_i, b_f, b_g, b_o = b.chunk(4)
    h, c = torch.zeros(B, H, dtype=torch.float64), torch.zeros(B, H, dtype=torch.float64)
    for rec, x_t in zip(_by(steps, 0, 0), x):
        f_t = torch.sigmoid(x_t @ W_if.T + h @ W_hf.T + b_f)
        i_t = torch.sigmoid(x_t @ W_ii.T + h @ W_hi.T + b_i)
        g_t = torch.tanh(x_t @ W_ig.T + h @ W_hg.T + b_g)
        o_t = torch.sigmoid(x_t @ W_io.T + h @ W_ho.T + b_o)
        c = f_t * c + i_t * g_t
        h = o_t * torch.tanh(c)
        for name, want in (("forget_gate", f_t), ("input_gate", i_t), ("candidate", g_t),
                           ("output_gate", o_t)):
            assert torch.allclose(rec.gates[name], want, atol=TOL), (rec.t, name)
        assert torch.allclose(rec.c_t, c, atol=TOL) and torch.allclose(rec.h_t, h, atol=TOL)

    # the last layer's records are the output: forward half, then reverse half
    assert torch.allclose(torch.stack([r.h_t for r in _by(steps, 1, 0)]), out[..., :H], atol=TOL)
    reverse = sorted(_by(steps, 1, 1), key=lambda r: r.t)
    assert torch.allclose(torch.stack([r.h_t for r in reverse]), out[..., H:], atol=TOL)
    # h_n of the reverse direction is its state after reading back to t = 0
    assert torch.allclose(h_n[3], reverse[0].h_t, atol=TOL)
    assert torch.allclose(c_n[3], reverse[0].c_t, atol=TOL)


def test_recorded_gru_gates_are_the_equations():
    gru = GRU(F_IN, H, dtype=torch.float64)
    x = torch.randn(T, B, F_IN, dtype=torch.float64)
    with record_steps(gru) as steps:
        gru(x)
    W_ir, W_iz, W_in = gru.weight_ih_l0.chunk(3)
    W_hr, W_hz, W_hn = gru.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = gru.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = gru.bias_hh_l0.chunk(3)
    h = torch.zeros(B, H, dtype=torch.float64)
    for rec, x_t in zip(steps, x):
        r_t = torch.sigmoid(x_t @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z_t = torch.sigmoid(x_t @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        n_t = torch.tanh(x_t @ W_in.T + b_in + r_t * (h @ W_hn.T + b_hn))
        h = (1 - z_t) * n_t + z_t * h
        assert rec.c_t is None
        for name, want in (("reset_gate", r_t), ("update_gate", z_t), ("candidate", n_t)):
            assert torch.allclose(rec.gates[name], want, atol=TOL), (rec.t, name)
        assert torch.allclose(rec.h_t, h, atol=TOL)


def test_dL_dh_t_is_available_for_every_step_and_matches_the_chain_rule():
    rnn = RNN(F_IN, H, dtype=torch.float64)
    x = torch.randn(T, B, F_IN, dtype=torch.float64)
    w = torch.randn(B, H, dtype=torch.float64)
    with record_steps(rnn) as steps:
        out, _ = rnn(x)
    loss = (out[-1] * w).sum()  # the loss reads only the last step
    grads = torch.autograd.grad(loss, [r.h_t for r in steps], retain_graph=True)
    assert len(grads) == T and all(g is not None and g.abs().sum() > 0 for g in grads)
    # dL/dh_{T-1} = w;  dL/dh_{T-2} = W_hh^T (w * (1 - h_{T-1}^2))  (tanh' = 1 - tanh^2)
    h_last = steps[-1].h_t.detach()
    assert torch.allclose(grads[-1], w, atol=TOL)
    assert torch.allclose(grads[-2], (w * (1 - h_last ** 2)) @ rnn.weight_hh_l0, atol=TOL)
    norms = hidden_grad_norms(loss, steps)
    assert norms.shape == (T,)
    assert torch.allclose(norms, torch.stack([g.norm() for g in grads]), atol=TOL)


def test_gradient_vanishes_back_through_time_in_a_contracting_simple_rnn():
    # with ||W_hh||_2 < 1 and |tanh'| <= 1 every step back shrinks dL/dh_t: seed 003's claim
    rnn = RNN(F_IN, 8, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_hh_l0 *= 0.9 / torch.linalg.matrix_norm(rnn.weight_hh_l0, ord=2)
    x = torch.randn(20, 1, F_IN, dtype=torch.float64)
    with record_steps(rnn) as steps:
        out, _ = rnn(x)
    norms = hidden_grad_norms(out[-1].sum(), steps)
    assert (norms[:-1] < 0.9 * norms[1:]).all()   # strictly, by at least the norm bound
    assert norms[0] < 1e-2 * norms[-1]


def test_step_records_of_a_packed_batch_cover_only_the_active_sequences():
    lstm = LSTM(F_IN, H, dtype=torch.float64)
    x = torch.randn(T, 3, F_IN, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([2, T, 4]), enforce_sorted=False)
    with record_steps(lstm) as steps:
        out, _ = lstm(packed)
    assert [r.h_t.shape[0] for r in steps] == packed.batch_sizes.tolist()  # [3, 3, 2, 2, 1, 1]
    assert torch.allclose(torch.cat([r.h_t for r in steps]), out.data, atol=TOL)
    grads = torch.autograd.grad(out.data.sum(), [r.h_t for r in steps])
    assert all(g.shape == r.h_t.shape for g, r in zip(grads, steps))


def test_removing_a_step_hook_stops_recording():
    gru = GRU(F_IN, H)
    seen = []
    handle = gru.register_step_hook(lambda module, rec: seen.append((module, rec.t)))
    gru(torch.randn(T, B, F_IN))
    assert [t for _, t in seen] == list(range(T)) and seen[0][0] is gru
    handle.remove()
    gru(torch.randn(T, B, F_IN))
    assert len(seen) == T


def test_record_steps_names_the_layer_inside_a_model():
    model = nn.ModuleDict({"encoder": GRU(F_IN, H), "decoder": LSTM(H, H)})
    with record_steps(model) as steps:
        y, _ = model["encoder"](torch.randn(T, B, F_IN))
        model["decoder"](y)
    assert [r.source for r in steps] == ["encoder"] * T + ["decoder"] * T


# ---- backpropagation through time -----------------------------------------------------------------

@pytest.mark.parametrize("batch_first", [False, True])
def test_truncated_bptt_forward_equals_one_pass(batch_first):
    lstm = LSTM(F_IN, H, num_layers=2, batch_first=batch_first, dtype=torch.float64)
    x = torch.randn((B, 10, F_IN) if batch_first else (10, B, F_IN), dtype=torch.float64)
    whole, (h_n, c_n) = lstm(x)
    chunks = list(truncated_bptt(lstm, x, chunk_len=4))
    assert [o.shape[1 if batch_first else 0] for o, _ in chunks] == [4, 4, 2]
    assert torch.allclose(torch.cat([o for o, _ in chunks], dim=1 if batch_first else 0), whole, atol=TOL)
    assert torch.allclose(chunks[-1][1][0], h_n, atol=TOL) and torch.allclose(chunks[-1][1][1], c_n, atol=TOL)


def test_truncated_bptt_stops_gradients_at_chunk_boundaries():
    gru = GRU(F_IN, H, dtype=torch.float64)
    x = torch.randn(8, B, F_IN, dtype=torch.float64, requires_grad=True)
    chunks = list(truncated_bptt(gru, x, chunk_len=4))
    (grad,) = torch.autograd.grad(chunks[1][0].sum(), x)  # loss on the second chunk only
    assert grad[:4].abs().max() == 0 and grad[4:].abs().min() > 0
    out, _ = gru(x)  # whole-sequence BPTT: the same loss reaches the first chunk
    (grad_whole,) = torch.autograd.grad(out[4:].sum(), x)
    assert grad_whole[:4].abs().min() > 0


def test_detach_state_keeps_structure_and_cuts_history():
    h = torch.randn(2, 3, requires_grad=True) * 2
    c = torch.randn(2, 3, requires_grad=True) * 2
    assert detach_state(None) is None
    assert not detach_state(h).requires_grad and torch.equal(detach_state(h), h)
    pair = detach_state((h, c))
    assert isinstance(pair, tuple) and not any(s.requires_grad for s in pair)
    assert isinstance(detach_state([h, c]), list)
    with pytest.raises(TypeError, match="state must be a tensor"):
        detach_state({"h": h})


def test_training_with_truncated_bptt_and_clipping_lowers_the_loss():
    # predict the next value of sine waves with random phases, 3 chunks of 15 steps per sequence
    torch.manual_seed(0)
    lstm, head = LSTM(1, 16), nn.Linear(16, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=2e-2)
    t = torch.arange(46, dtype=torch.float32)[:, None, None] * 0.3     # (46, 1, 1)
    losses = []
    for _ in range(25):
        wave = torch.sin(t + 6.28 * torch.rand(1, 8, 1))                # (46, 8, 1)
        x, y = wave[:-1], wave[1:]
        state, total = None, 0.0
        for x_chunk, y_chunk in zip(time_chunks(x, 15), time_chunks(y, 15)):
            out, state = lstm(x_chunk, detach_state(state))
            loss = nn.functional.mse_loss(head(out), y_chunk)
            opt.zero_grad()
            loss.backward()
            norm = clip_grad_norm_(params, max_norm=1.0)
            assert torch.isfinite(norm)
            opt.step()
            total += loss.item()
        losses.append(total / 3)
    assert losses[-1] < 0.1 * losses[0], losses


def test_time_chunks_rejects_bad_chunk_length():
    with pytest.raises(ConfigError, match=re.escape("chunk_len must be a positive integer, got 0")):
        time_chunks(torch.randn(5, 2, 3), 0)


# ---- errors on bad input --------------------------------------------------------------------------

def _packed(lengths=(3, 1)):
    return pack_padded_sequence(torch.randn(3, len(lengths), 5), torch.tensor(lengths), enforce_sorted=False)


BAD_INPUTS = {
    "input features": (lambda: LSTM(5, 4)(torch.randn(3, 2, 6)),
                       "input has 6 features, LSTM expects input_size=5"),
    "input rank": (lambda: GRU(5, 4)(torch.randn(3, 2, 5, 1)),
                   "GRU: input must be 3-D (time, batch, features), 2-D (time, features) or a "
                   "PackedSequence, got (3, 2, 5, 1)"),
    "batch-first rank": (lambda: GRU(5, 4, batch_first=True)(torch.randn(5)),
                         "GRU: input must be 3-D (batch, time, features)"),
    "h_0 batch": (lambda: LSTM(5, 4, 2)(torch.randn(3, 2, 5), (torch.zeros(2, 3, 4), torch.zeros(2, 2, 4))),
                  "LSTM: h_0 has shape (2, 3, 4), expected (2, 2, 4) (num_layers*num_directions=2, "
                  "batch=2, hidden_size=4)"),
    "c_0 size": (lambda: LSTM(5, 4)(torch.randn(3, 2, 5), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 3))),
                 "LSTM: c_0 has shape (1, 2, 3), expected (1, 2, 4)"),
    "projected h_0": (lambda: LSTM(5, 4, proj_size=2)(torch.randn(3, 2, 5), (torch.zeros(1, 2, 4),
                                                                              torch.zeros(1, 2, 4))),
                      "LSTM: h_0 has shape (1, 2, 4), expected (1, 2, 2) (num_layers*num_directions=1, "
                      "batch=2, proj_size=2)"),
    "bidirectional h_0": (lambda: GRU(5, 4, bidirectional=True)(torch.randn(3, 2, 5), torch.zeros(1, 2, 4)),
                          "GRU: h_0 has shape (1, 2, 4), expected (2, 2, 4)"),
    "LSTM hx not a pair": (lambda: LSTM(5, 4)(torch.randn(3, 2, 5), torch.zeros(1, 2, 4)),
                           "LSTM: hx must be the pair (h_0, c_0), got Tensor"),
    "unbatched h_0": (lambda: RNN(5, 4)(torch.randn(3, 5), torch.zeros(1, 2, 4)),
                      "RNN: h_0 has shape (1, 2, 4), expected (1, 4)"),
    "packed h_0 batch": (lambda: GRU(5, 4)(_packed(), torch.zeros(1, 3, 4)),
                         "GRU: h_0 has shape (1, 3, 4), expected (1, 2, 4)"),
    "empty sequence": (lambda: RNN(5, 4)(torch.randn(0, 2, 5)),
                       "RNN: input has 0 time steps, expected at least 1"),
    "dtype": (lambda: GRU(5, 4)(torch.randn(3, 2, 5, dtype=torch.float64)),
              "GRU: input dtype is torch.float64, the weights are torch.float32"),
    "cell features": (lambda: LSTMCell(5, 4)(torch.randn(2, 6)),
                      "input has 6 features, LSTMCell expects input_size=5"),
    "cell state batch": (lambda: GRUCell(5, 4)(torch.randn(2, 5), torch.zeros(3, 4)),
                         "GRUCell: hx has shape (3, 4), expected (2, 4) (batch, hidden_size=4)"),
    "cell c_0": (lambda: LSTMCell(5, 4)(torch.randn(2, 5), (torch.zeros(2, 4), torch.zeros(2, 5))),
                 "LSTMCell: c_0 has shape (2, 5), expected (2, 4)"),
    "cell hx not a pair": (lambda: LSTMCell(5, 4)(torch.randn(2, 5), torch.zeros(2, 4)),
                           "LSTMCell: hx must be the pair (h_0, c_0), got Tensor"),
    "cell rank": (lambda: RNNCell(5, 4)(torch.randn(1, 2, 5)),
                  "RNNCell: input must be 2-D (batch, features) or 1-D (features), got shape (1, 2, 5)"),
    "proj_size on GRU": (lambda: GRU(5, 4, proj_size=2),
                         "proj_size is supported by LSTM only, got proj_size=2 for GRU"),
    "proj_size too big": (lambda: LSTM(5, 4, proj_size=4),
                          "LSTM: proj_size must be smaller than hidden_size=4, got 4"),
    "nonlinearity": (lambda: RNN(5, 4, nonlinearity="sigmoid"),
                     "nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"),
    "hidden_size": (lambda: LSTM(5, 0), "LSTM: hidden_size must be a positive integer, got 0"),
    "num_layers": (lambda: GRU(5, 4, num_layers=0), "GRU: num_layers must be a positive integer, got 0"),
    "dropout": (lambda: LSTM(5, 4, 2, dropout=1.5), "LSTM: dropout must be a probability in [0, 1], got 1.5"),
    "impl": (lambda: setattr(LSTM(5, 4), "impl", "fast"), "impl must be one of"),
    "lengths too long": (lambda: pack_padded(torch.randn(3, 2, 5), [4, 1]),
                         "lengths must be between 1 and the padded length 3, got [4, 1]"),
    "zero length": (lambda: pack_padded(torch.randn(2, 3, 5), [2, 0], batch_first=True),
                    "lengths must be between 1 and the padded length 3, got [2, 0]"),
    "lengths count": (lambda: pack_padded(torch.randn(3, 2, 5), [3, 1, 1]),
                      "lengths has 3 entries, expected one per sequence: batch=2"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_config_error_naming_expected_and_given(case):
    fn, message = BAD_INPUTS[case]
    with pytest.raises(ConfigError, match=re.escape(message)):
        fn()


def test_pack_padded_accepts_unsorted_lengths_and_round_trips_through_the_layer():
    gru = GRU(5, 4, batch_first=True, dtype=torch.float64)
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    out, h_n = gru(pack_padded(x, [2, 6, 4], batch_first=True))
    for i, n in enumerate([2, 6, 4]):  # each sequence alone gives the same final state
        _, h_alone = gru(x[i:i + 1, :n])
        assert torch.allclose(h_n[:, i], h_alone[:, 0], atol=TOL)


def test_single_layer_dropout_warns_like_torch():
    with pytest.warns(UserWarning, match="dropout=0.5 acts between layers"):
        LSTM(5, 4, dropout=0.5)
