"""The gates of a recurrent layer over time, recomputed from its weights with the equations.

A recurrent layer runs its fused kernel, which returns h_t (and the final c_T) but no gates. To
show the gates, this module takes the input the layer received and its weights by gate
(``layer.gate_weights(layer, direction)``) and runs the equations once more, step by step:

    LSTM  i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
          f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
          g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)       candidate
          o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
          c_t = f_t * c_{t-1} + i_t * g_t,   h_t = o_t * tanh(c_t)   (W_hr h_t with a projection)
    GRU   r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      reset gate
          z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      update gate
          n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))   candidate
          h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    RNN   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)    (or ReLU)

Layers are stacked (layer l reads the states of layer l - 1, both directions side by side), the
backward direction reads the sequence from its end. ``trace`` returns the gates and states of
every layer and direction, and ``output``: the last layer's h_t, which must equal what the layer
itself returned -- ``max_difference`` says by how much it does not (rounding only).

Only what explaining needs: one sequence (no batch), evaluation mode (no dropout between layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from archlab.errors import check

GATE_TITLES = {"input_gate": "input gate i_t", "forget_gate": "forget gate f_t", "output_gate": "output gate o_t",
               "candidate": "candidate", "reset_gate": "reset gate r_t", "update_gate": "update gate z_t"}


@dataclass
class LayerTrace:
    """One layer and direction over the T steps of a sequence, in time order (t = 0 first)."""

    layer: int
    direction: int                               # 0 forward, 1 backward
    gates: dict[str, Tensor] = field(default_factory=dict)   # name -> (T, H)
    h: Tensor | None = None                      # (T, P) hidden states h_t
    c: Tensor | None = None                      # (T, H) cell states c_t (LSTM)


@dataclass
class Trace:
    kind: str                                    # "LSTM" | "GRU" | "RNN"
    layers: list[LayerTrace]
    output: Tensor                               # (T, D * P): the last layer's h_t, directions side by side


def _step(mode: str, w: dict[str, dict[str, Tensor | None]], x_t: Tensor, h: Tensor, c: Tensor | None,
          weight_hr: Tensor | None):
    """One step of the equations: (h_t, c_t, {gate: value})."""
    def pre(gate: str, with_h: bool = True) -> Tensor:
        g = w[gate]
        out = g["weight_ih"] @ x_t + (g["bias_ih"] if g["bias_ih"] is not None else 0)
        if with_h:
            out = out + g["weight_hh"] @ h + (g["bias_hh"] if g["bias_hh"] is not None else 0)
        return out

    if mode == "LSTM":
        input_gate, forget_gate = torch.sigmoid(pre("input_gate")), torch.sigmoid(pre("forget_gate"))
        candidate, output_gate = torch.tanh(pre("candidate")), torch.sigmoid(pre("output_gate"))
        c_t = forget_gate * c + input_gate * candidate
        h_t = output_gate * torch.tanh(c_t)
        if weight_hr is not None:
            h_t = weight_hr @ h_t
        return h_t, c_t, {"input_gate": input_gate, "forget_gate": forget_gate, "candidate": candidate,
                          "output_gate": output_gate}
    if mode == "GRU":
        reset_gate, update_gate = torch.sigmoid(pre("reset_gate")), torch.sigmoid(pre("update_gate"))
        n = w["candidate"]
        h_n = n["weight_hh"] @ h + (n["bias_hh"] if n["bias_hh"] is not None else 0)
        candidate = torch.tanh(pre("candidate", with_h=False) + reset_gate * h_n)
        h_t = (1 - update_gate) * candidate + update_gate * h
        return h_t, None, {"reset_gate": reset_gate, "update_gate": update_gate, "candidate": candidate}
    f = torch.relu if mode == "RNN_RELU" else torch.tanh
    return f(pre("hidden")), None, {}


@torch.no_grad()
def trace(rnn, x: Tensor, h0: Tensor | None = None, c0: Tensor | None = None) -> Trace:
    """Gates and states of recurrent layer ``rnn`` (archlab's RNN / LSTM / GRU) over one sequence.

    ``x`` (T, F) is what the layer read; ``h0`` (L * D, P) and ``c0`` (L * D, H) its initial state
    (zeros when None).
    """
    check(x.dim() == 2 and x.shape[-1] == rnn.input_size,
          f"trace needs one sequence (T, input_size={rnn.input_size}), got shape {tuple(x.shape)}")
    mode, D, L = rnn.mode, rnn.num_directions, rnn.num_layers
    P, H = rnn.state_size, rnn.hidden_size
    x = x.to(rnn.weight_ih_l0.dtype)
    T = x.shape[0]
    layers, layer_input = [], x
    for layer in range(L):
        outputs = []
        for direction in range(D):
            k = layer * D + direction
            weights = rnn.gate_weights(layer, direction)
            weight_hr = getattr(rnn, f"weight_hr_l{layer}" + ("_reverse" if direction else ""), None)  # torch's name
            h = h0[k] if h0 is not None else x.new_zeros(P)
            c = (c0[k] if c0 is not None else x.new_zeros(H)) if mode == "LSTM" else None
            steps = range(T - 1, -1, -1) if direction == 1 else range(T)
            hs, cs, gates = [None] * T, [None] * T, {}
            for t in steps:
                h, c, g = _step(mode, weights, layer_input[t], h, c, weight_hr)
                hs[t], cs[t] = h, c
                for name, value in g.items():
                    gates.setdefault(name, [None] * T)[t] = value
            lt = LayerTrace(layer, direction, {n: torch.stack(v) for n, v in gates.items()}, torch.stack(hs),
                            torch.stack(cs) if mode == "LSTM" else None)
            layers.append(lt)
            outputs.append(lt.h)
        layer_input = torch.cat(outputs, dim=-1)  # (T, D * P)
    return Trace({"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode), layers, layer_input)


def max_difference(traced: Trace, output: Tensor) -> float:
    """The largest |difference| between the recomputed h_t and the layer's own output (T, D * P)."""
    return float((traced.output - output.detach().to(traced.output.dtype)).abs().max())
