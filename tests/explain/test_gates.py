"""Gates recomputed from a recurrent layer's weights equal what the layer computes, in float64."""

from __future__ import annotations

import pytest
import torch

from archlab.explain.gates import max_difference, trace
from archlab.nn import GRU, LSTM, RNN

f64 = torch.float64
TOL = 1e-12  # float64: the same arithmetic in another order


@pytest.mark.parametrize("cls,kw", [
    (LSTM, dict(num_layers=2, bidirectional=True)),
    (LSTM, dict(proj_size=3)),
    (GRU, dict(num_layers=2, bidirectional=True)),
    (RNN, dict(nonlinearity="relu")),
    (RNN, dict()),
])
def test_recomputed_states_equal_the_fused_layer_and_gates_equal_the_reference_path(cls, kw):
    torch.manual_seed(0)
    m = cls(5, 7, batch_first=True, **kw).to(f64).eval()
    x = torch.randn(1, 9, 5, dtype=f64)
    LD = m.num_layers * m.num_directions
    h0 = torch.randn(LD, 1, m.state_size, dtype=f64)
    c0 = torch.randn(LD, 1, m.hidden_size, dtype=f64) if cls is LSTM else None
    hx = (h0, c0) if cls is LSTM else h0
    out, _ = m(x, hx)  # the fused kernel
    t = trace(m, x[0], h0[:, 0], c0[:, 0] if c0 is not None else None)
    assert max_difference(t, out[0]) < TOL
    assert len(t.layers) == LD and t.output.shape == out[0].shape

    # The gates the reference path's step hooks see (archlab.nn.recurrent's own equations).
    seen = {}
    handle = m.register_step_hook(lambda _m, r: seen.setdefault((r.layer, r.direction, r.t), r))
    m(x, hx)
    handle.remove()
    for lt in t.layers:
        for step in range(9):
            record = seen[(lt.layer, lt.direction, step)]
            assert set(record.gates) == set(lt.gates)
            for name, value in lt.gates.items():
                torch.testing.assert_close(value[step], record.gates[name][0], rtol=0, atol=TOL)
            torch.testing.assert_close(lt.h[step], record.h_t[0], rtol=0, atol=TOL)
            if lt.c is not None:
                torch.testing.assert_close(lt.c[step], record.c_t[0], rtol=0, atol=TOL)


def test_first_forget_gate_by_hand():
    m = LSTM(3, 4).to(f64)
    x = torch.randn(6, 3, dtype=f64)
    t = trace(m, x)  # zero initial state: f_0 = sigma(W_if x_0 + b_if + b_hf)
    w = m.gate_weights()["forget_gate"]
    expected = torch.sigmoid(w["weight_ih"] @ x[0] + w["bias_ih"] + w["bias_hh"])
    torch.testing.assert_close(t.layers[0].gates["forget_gate"][0], expected, rtol=0, atol=TOL)
    gates = torch.stack(list(t.layers[0].gates.values()))
    assert float(gates.min()) >= -1 and float(gates.max()) <= 1


def test_one_sequence_only():
    from archlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trace needs one sequence \(T, input_size=3\), got shape \(2, 6, 3\)"):
        trace(GRU(3, 4), torch.randn(2, 6, 3))
