"""Recurrent blocks: the simple RNN, the LSTM and the GRU, written from their equations.

A recurrent network reads a sequence one step at a time and carries a hidden state h_t, "the memory"
(seed 003). With x_t the input at step t and sigma the logistic sigmoid:

Simple RNN (tanh or ReLU for f)::

    h_t = f(W_xh x_t + b_ih + W_hh h_{t-1} + b_hh)

LSTM (Hochreiter & Schmidhuber 1997): a cell state c_t, the "highway" for long-term memory, guarded
by three gates::

    input_gate   i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    forget_gate  f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    candidate    g_t =  tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    output_gate  o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)                       (with proj_size > 0: h_t = W_hr (o_t * tanh(c_t)))

GRU (Cho et al. 2014): a reset gate and an update gate, no separate cell state::

    reset_gate   r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    update_gate  z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    candidate    n_t =  tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Parameters are stored as PyTorch stores them, so state_dicts interchange with ``torch.nn``:
``weight_ih`` stacks the input weights of the gates (W_xh for the simple RNN), ``weight_hh`` the
recurrent ones, in torch's gate order (LSTM: i, f, g, o; GRU: r, z, n). The two biases b_ih and b_hh
(one would do; cuDNN keeps two) sum to the seed's b_h. A layer names them ``weight_ih_l{k}``,
``bias_hh_l{k}_reverse``, ... and ``weight_hr_l{k}`` for the LSTM projection (torch's name; not
the GRU's W_hr, which is a block of ``weight_hh``). ``gate_weights()`` returns the blocks by gate.

Two paths (``module.impl``):

- ``"reference"`` runs the equations above step by step in Python. Packed sequences are handled by
  the per-step batch sizes: at step t only the first ``batch_sizes[t]`` sequences (sorted longest
  first) are updated, the others keep their state. Step hooks (``register_step_hook``, and
  ``record_steps`` in ``archlab.nn.bptt``) see every h_t, c_t and gate, kept in the autograd graph.
- ``"fused"`` (default) calls the kernels ``torch.nn.LSTM`` itself calls (``torch._VF.lstm``,
  ``gru``, ``rnn_tanh``, ``rnn_relu``: oneDNN or a C++ loop on CPU, cuDNN on CUDA) on the same parameters,
  passed as the flat weight list in torch's order. We pass the parameters as they are rather than
  flattening them into one cuDNN buffer, so on CUDA cuDNN may copy them into one per call.

Dimension letters: T time steps, B batch, F input features, H hidden size, D directions (1 or 2),
L layers, P the size of h_t (proj_size for a projected LSTM, else H).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor, _VF
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence
from torch.utils.hooks import RemovableHandle

from archlab.errors import check
from archlab.nn.checks import check_module_type
from archlab.nn.bptt import StepRecord
from archlab.nn.twopath import TwoPath

# --------------------------------------------------------------------------------------------------
# One time step of each cell, from the equations. ``gi = W_ih x_t + b_ih`` is computed by the caller:
# it does not depend on h_{t-1}, so a layer computes it for all time steps in one matrix product.
# Each step returns the new state and the gates, by name.
# --------------------------------------------------------------------------------------------------


def rnn_tanh_step(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, weight_hr=None):
    h_t = torch.tanh(gi + F.linear(h, weight_hh, bias_hh))
    return h_t, {}


def rnn_relu_step(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, weight_hr=None):
    h_t = torch.relu(gi + F.linear(h, weight_hh, bias_hh))
    return h_t, {}


def lstm_step(gi: Tensor, state: tuple[Tensor, Tensor], weight_hh: Tensor, bias_hh: Tensor | None,
              weight_hr: Tensor | None = None):
    h, c = state
    i, f, g, o = (gi + F.linear(h, weight_hh, bias_hh)).chunk(4, dim=-1)  # 4 x (B, H)
    input_gate, forget_gate = torch.sigmoid(i), torch.sigmoid(f)
    candidate, output_gate = torch.tanh(g), torch.sigmoid(o)
    c_t = forget_gate * c + input_gate * candidate
    h_t = output_gate * torch.tanh(c_t)
    if weight_hr is not None:
        h_t = F.linear(h_t, weight_hr)  # (B, P)
    gates = {"input_gate": input_gate, "forget_gate": forget_gate, "candidate": candidate,
             "output_gate": output_gate}
    return (h_t, c_t), gates


def gru_step(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, weight_hr=None):
    i_r, i_z, i_n = gi.chunk(3, dim=-1)                                    # 3 x (B, H)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)       # 3 x (B, H)
    reset_gate = torch.sigmoid(i_r + h_r)
    update_gate = torch.sigmoid(i_z + h_z)
    candidate = torch.tanh(i_n + reset_gate * h_n)
    h_t = (1 - update_gate) * candidate + update_gate * h
    return h_t, {"reset_gate": reset_gate, "update_gate": update_gate, "candidate": candidate}


class Mode(NamedTuple):
    """What distinguishes the recurrent families: a table, not copied classes."""

    name: str             # as torch names it in repr and errors
    gate_names: tuple     # the blocks of weight_ih / weight_hh, top to bottom (torch's order)
    step: Callable        # one step of the equations
    fused: Callable       # torch's fused sequence kernel
    fused_cell: Callable  # torch's fused single-step kernel
    has_cell: bool        # LSTM carries (h, c); the others carry h


    @property
    def num_gates(self) -> int:
        return len(self.gate_names)


LSTM_GATES = ("input_gate", "forget_gate", "candidate", "output_gate")
GRU_GATES = ("reset_gate", "update_gate", "candidate")

MODES = {
    "RNN_TANH": Mode("RNN", ("hidden",), rnn_tanh_step, _VF.rnn_tanh, _VF.rnn_tanh_cell, False),
    "RNN_RELU": Mode("RNN", ("hidden",), rnn_relu_step, _VF.rnn_relu, _VF.rnn_relu_cell, False),
    "LSTM": Mode("LSTM", LSTM_GATES, lstm_step, _VF.lstm, _VF.lstm_cell, True),
    "GRU": Mode("GRU", GRU_GATES, gru_step, _VF.gru, _VF.gru_cell, False),
}


def _split_gates(mode: str, params: dict[str, Tensor | None]) -> dict[str, dict[str, Tensor | None]]:
    """{gate: {"weight_ih": W_x, "weight_hh": W_h, "bias_ih": b_x, "bias_hh": b_h}}, as views."""
    names = MODES[mode].gate_names
    blocks = {k: (params[k].chunk(len(names)) if params[k] is not None else (None,) * len(names))
              for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    return {gate: {k: blocks[k][i] for k in blocks} for i, gate in enumerate(names)}


def _rnn_mode(nonlinearity: str) -> str:
    check(nonlinearity in ("tanh", "relu"),
          f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


def _check_sizes(kind: str, input_size, hidden_size) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
              f"{kind}: {name} must be a positive integer, got {value!r}")


def _check_dtype(kind: str, x: Tensor, weight: Tensor) -> None:
    check(x.dtype == weight.dtype or torch.is_autocast_enabled(x.device.type),
          f"{kind}: input dtype is {x.dtype}, the weights are {weight.dtype}; "
          f"convert one (input.to({weight.dtype}) or module.to({x.dtype}))")


def _shape(t: Tensor) -> tuple:
    return tuple(t.shape)


# --------------------------------------------------------------------------------------------------
# Cells: one time step, drop-ins for torch.nn.RNNCell / LSTMCell / GRUCell.
# --------------------------------------------------------------------------------------------------


class RecurrentCell(TwoPath, nn.Module):
    """One step of a recurrent network. Input (B, F) or unbatched (F,); state (B, H) or (H,)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        _check_sizes(MODES[mode].name + "Cell", input_size, hidden_size)
        self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, hidden_size, bias
        gate_rows = MODES[mode].num_gates * hidden_size
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(gate_rows, input_size, **factory))   # W_xh, stacked
        self.weight_hh = nn.Parameter(torch.empty(gate_rows, hidden_size, **factory))  # W_hh, stacked
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gate_rows, **factory))
            self.bias_hh = nn.Parameter(torch.empty(gate_rows, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    @property
    def kind(self) -> str:
        return type(self).__name__

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, input: Tensor, hx=None):
        check(input.dim() in (1, 2),
              f"{self.kind}: input must be 2-D (batch, features) or 1-D (features), "
              f"got shape {_shape(input)}")
        check(input.shape[-1] == self.input_size,
              f"input has {input.shape[-1]} features, {self.kind} expects input_size={self.input_size}")
        _check_dtype(self.kind, input, self.weight_ih)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, F)
        mode = MODES[self.mode]
        if hx is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            hx = (zeros, zeros) if mode.has_cell else zeros
        else:
            check(not mode.has_cell or (isinstance(hx, (tuple, list)) and len(hx) == 2),
                  f"{self.kind}: hx must be the pair (h_0, c_0), got {type(hx).__name__}")
            states = hx if mode.has_cell else (hx,)
            names = ("h_0", "c_0") if mode.has_cell else ("hx",)
            want = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
            for name, s in zip(names, states):
                check(_shape(s) == want,
                      f"{self.kind}: {name} has shape {_shape(s)}, expected {want} "
                      f"({'batch, ' if batched else ''}hidden_size={self.hidden_size})")
            if not batched:
                hx = tuple(s.unsqueeze(0) for s in states) if mode.has_cell else hx.unsqueeze(0)

        if self.impl == "fused":
            out = mode.fused_cell(x, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        else:
            gi = F.linear(x, self.weight_ih, self.bias_ih)
            out, _gates = mode.step(gi, hx, self.weight_hh, self.bias_hh)
        if not batched:
            out = tuple(s.squeeze(0) for s in out) if mode.has_cell else out.squeeze(0)
        return out

    def gate_weights(self) -> dict[str, dict[str, Tensor | None]]:
        """The weights of each gate by name, as views of the parameters (see RecurrentLayer)."""
        return _split_gates(self.mode, {"weight_ih": self.weight_ih, "weight_hh": self.weight_hh,
                                        "bias_ih": self.bias_ih, "bias_hh": self.bias_hh})

    @classmethod
    def from_torch(cls, m: nn.Module) -> "RecurrentCell":
        """Build the archlab cell equal to the torch cell ``m`` (same parameters, copied)."""
        check_module_type(cls, m, getattr(nn, cls.__name__))
        kwargs = {"nonlinearity": m.nonlinearity} if isinstance(m, nn.RNNCell) else {}
        cell = cls(m.input_size, m.hidden_size, bias=m.bias, device=m.weight_ih.device,
                   dtype=m.weight_ih.dtype, **kwargs)
        cell.load_state_dict(m.state_dict())
        return cell

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s + f", impl={self.impl!r}"


class RNNCell(RecurrentCell):
    """h_t = tanh(W_xh x_t + b_ih + W_hh h_{t-1} + b_hh) (or ReLU); drop-in for ``torch.nn.RNNCell``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        super().__init__(_rnn_mode(nonlinearity), input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity


class LSTMCell(RecurrentCell):
    """One LSTM step (gates i, f, g, o); returns (h_t, c_t). Drop-in for ``torch.nn.LSTMCell``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)


class GRUCell(RecurrentCell):
    """One GRU step (gates r, z, candidate n); returns h_t. Drop-in for ``torch.nn.GRUCell``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)


# --------------------------------------------------------------------------------------------------
# Variable-length batches.
# --------------------------------------------------------------------------------------------------


def pack_padded(x: Tensor, lengths, batch_first: bool = False) -> PackedSequence:
    """``pack_padded_sequence`` (any order of lengths) that first checks the lengths fit ``x``.

    torch packs a length longer than the padded sequence without complaint, reading past the
    data; here it is a ``ConfigError``. ``x`` is (T, B, ...) or (B, T, ...) with ``batch_first``.
    """
    lengths = torch.as_tensor(lengths).detach().to("cpu", torch.int64)
    check(x.dim() >= 2, f"x must have time and batch dimensions, got shape {_shape(x)}")
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    check(lengths.dim() == 1 and lengths.numel() == B,
          f"lengths has {lengths.numel()} entries, expected one per sequence: batch={B}")
    check(bool((lengths > 0).all()) and bool((lengths <= T).all()),
          f"lengths must be between 1 and the padded length {T}, got {lengths.tolist()}")
    return pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)


# --------------------------------------------------------------------------------------------------
# Layers: drop-ins for torch.nn.RNN / LSTM / GRU.
# --------------------------------------------------------------------------------------------------


class RecurrentLayer(TwoPath, nn.Module):
    """Stacked, optionally bidirectional recurrent layers over a whole sequence.

    ``forward(input, hx=None)`` takes input (T, B, F), (B, T, F) with ``batch_first``, unbatched
    (T, F), or a ``PackedSequence``; ``hx`` is h_0 of shape (L*D, B, P) (LSTM: the pair (h_0, c_0),
    c_0 of shape (L*D, B, H)), zeros when not given. It returns ``(output, h_n)`` (LSTM:
    ``(output, (h_n, c_n))``): output holds the last layer's h_t for every t, both directions
    concatenated, (T, B, D*P); h_n the final state of every layer and direction, row
    ``layer * D + direction`` (``h_n.view(L, D, B, P)`` separates them). For a bidirectional
    layer, ``h_n[-1]`` is the reverse direction's state after reading the whole sequence
    backwards, i.e. at t = 0: it equals ``output[0, :, P:]``, not ``output[-1, :, P:]`` (which
    has seen only the last step); ``h_n[-2]`` equals ``output[-1, :, :P]``. With packed input,
    h_n is taken at each sequence's own last step, not at the padded end.

    Dropout (probability ``dropout``) is applied to the output of every layer but the last, in
    training mode only.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        kind = MODES[mode].name
        _check_sizes(kind, input_size, hidden_size)
        check(isinstance(num_layers, int) and num_layers > 0,
              f"{kind}: num_layers must be a positive integer, got {num_layers!r}")
        check(isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout <= 1,
              f"{kind}: dropout must be a probability in [0, 1], got {dropout!r}")
        check(isinstance(proj_size, int) and proj_size >= 0,
              f"{kind}: proj_size must be a non-negative integer, got {proj_size!r}")
        check(proj_size == 0 or mode == "LSTM",
              f"proj_size is supported by LSTM only, got proj_size={proj_size} for {kind}")
        check(proj_size < hidden_size,
              f"{kind}: proj_size must be smaller than hidden_size={hidden_size}, got {proj_size}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{kind}: dropout={dropout} acts between layers, so it does nothing with "
                          f"num_layers=1", stacklevel=3)
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self._step_hooks: OrderedDict[int, Callable] = OrderedDict()

        D, P = self.num_directions, self.state_size
        gate_rows = MODES[mode].num_gates * hidden_size
        factory = {"device": device, "dtype": dtype}
        self._flat_weights_names: list[str] = []  # torch's order: per layer, per direction
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else D * P
            for direction in range(D):
                shapes = {"weight_ih": (gate_rows, layer_input), "weight_hh": (gate_rows, P)}
                if bias:
                    shapes.update(bias_ih=(gate_rows,), bias_hh=(gate_rows,))
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                for name, shape in shapes.items():
                    full = self._param_name(name, layer, direction)
                    self.register_parameter(full, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(full)
        self.reset_parameters()

    # ---- structure -------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return type(self).__name__

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_size(self) -> int:
        """P, the size of h_t: proj_size for a projected LSTM, else hidden_size."""
        return self.proj_size or self.hidden_size

    @staticmethod
    def _param_name(name: str, layer: int, direction: int) -> str:
        return f"{name}_l{layer}" + ("_reverse" if direction == 1 else "")

    def _layer_params(self, layer: int, direction: int) -> dict[str, Tensor | None]:
        return {name: getattr(self, self._param_name(name, layer, direction), None)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        per = len(self._flat_weights_names) // (self.num_layers * self.num_directions)
        w = self._flat_weights
        return [w[i:i + per] for i in range(0, len(w), per)]

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def gate_weights(self, layer: int = 0, direction: int = 0) -> dict[str, dict[str, Tensor | None]]:
        """The weights of each gate by name, ``{"forget_gate": {"weight_ih": W_if, "weight_hh": W_hf,
        "bias_ih": b_if, "bias_hh": b_hf}, ...}``, as views of the parameters: writing into them
        writes the parameters (e.g. ``gate_weights()["forget_gate"]["bias_ih"].data.fill_(1.0)``)."""
        check(0 <= layer < self.num_layers and direction in range(self.num_directions),
              f"{self.kind}: layer must be in [0, {self.num_layers}) and direction in "
              f"[0, {self.num_directions}), got layer={layer}, direction={direction}")
        return _split_gates(self.mode, self._layer_params(layer, direction))

    def flatten_parameters(self) -> None:
        """Kept for drop-in compatibility with ``torch.nn.RNNBase``; does nothing. The parameters
        stay separate tensors and the fused kernels receive them as a list (see the module doc)."""

    def register_step_hook(self, fn: Callable[[nn.Module, StepRecord], None]) -> RemovableHandle:
        """Call ``fn(module, record)`` at every time step; while any hook is set, forward runs the
        reference path. Returns a handle whose ``remove()`` unregisters ``fn``."""
        handle = RemovableHandle(self._step_hooks)
        self._step_hooks[handle.id] = fn
        return handle

    # ---- forward ---------------------------------------------------------------------------------
    def forward(self, input, hx=None):
        mode = MODES[self.mode]
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self.state_size
        packed = isinstance(input, PackedSequence)
        if packed:
            x, batch_sizes, sorted_indices, unsorted_indices = input
            check(x.dim() == 2, f"{self.kind}: packed data must be 2-D (steps, features), "
                                f"got shape {_shape(x)}")
            batch, batched = int(batch_sizes[0]), True
        else:
            check(isinstance(input, Tensor) and input.dim() in (2, 3),
                  f"{self.kind}: input must be 3-D ({'batch, time' if self.batch_first else 'time, batch'}"
                  f", features), 2-D (time, features) or a PackedSequence, got "
                  f"{_shape(input) if isinstance(input, Tensor) else type(input).__name__}")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1 if not self.batch_first else 0)
            if self.batch_first:
                x = x.transpose(0, 1)  # (T, B, F)
            batch_sizes = sorted_indices = unsorted_indices = None
            batch = x.shape[1]
            check(x.shape[0] > 0, f"{self.kind}: input has 0 time steps, expected at least 1")
        check(x.shape[-1] == self.input_size,
              f"input has {x.shape[-1]} features, {self.kind} expects input_size={self.input_size}")
        _check_dtype(self.kind, x, self.weight_ih_l0)

        h0, c0 = self._initial_state(hx, x, batch, batched, sorted_indices)

        if self.impl == "reference" or self._step_hooks:
            output, h_n, c_n = self._reference(x, batch_sizes, h0, c0)
        else:
            output, h_n, c_n = self._fused(x, batch_sizes, h0, c0)

        if packed:
            output = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            if unsorted_indices is not None:
                h_n = h_n.index_select(1, unsorted_indices)
                c_n = c_n.index_select(1, unsorted_indices) if c_n is not None else None
        else:
            if self.batch_first:
                output = output.transpose(0, 1)  # (B, T, D*P)
            if not batched:
                output = output.squeeze(0 if self.batch_first else 1)
                h_n = h_n.squeeze(1)
                c_n = c_n.squeeze(1) if c_n is not None else None
        return output, ((h_n, c_n) if mode.has_cell else h_n)

    def _initial_state(self, hx, x, batch, batched, sorted_indices):
        """h_0 (and c_0) as (L*D, B, ·), zeros when not given; checked, in packed order."""
        mode = MODES[self.mode]
        LD = self.num_layers * self.num_directions
        if hx is None:
            h0 = x.new_zeros(LD, batch, self.state_size)
            c0 = x.new_zeros(LD, batch, self.hidden_size) if mode.has_cell else None
            return h0, c0
        if mode.has_cell:
            check(isinstance(hx, (tuple, list)) and len(hx) == 2,
                  f"{self.kind}: hx must be the pair (h_0, c_0), got {type(hx).__name__}")
            states = {"h_0": (hx[0], self.state_size), "c_0": (hx[1], self.hidden_size)}
        else:
            check(isinstance(hx, Tensor), f"{self.kind}: hx must be a tensor h_0, got {type(hx).__name__}")
            states = {"h_0": (hx, self.state_size)}
        out = []
        for name, (s, size) in states.items():
            want = (LD, batch, size) if batched else (LD, size)
            check(_shape(s) == want,
                  f"{self.kind}: {name} has shape {_shape(s)}, expected {want} "
                  f"(num_layers*num_directions={LD}, " + (f"batch={batch}, " if batched else "")
                  + f"{'proj_size' if size != self.hidden_size else 'hidden_size'}={size})")
            s = s if batched else s.unsqueeze(1)
            if sorted_indices is not None:
                s = s.index_select(1, sorted_indices)  # the user's batch order -> packed order
            out.append(s)
        return out[0], (out[1] if mode.has_cell else None)

    def _fused(self, x, batch_sizes, h0, c0):
        """torch's own kernel on our parameters."""
        mode = MODES[self.mode]
        hx = (h0, c0) if mode.has_cell else h0
        common = (self._flat_weights, self.bias, self.num_layers, self.dropout, self.training,
                  self.bidirectional)
        if batch_sizes is None:
            result = mode.fused(x, hx, *common, False)  # x is (T, B, F) here
        else:
            result = mode.fused(x, batch_sizes, hx, *common)
        output, h_n = result[0], result[1]
        return output, h_n, (result[2] if mode.has_cell else None)

    def _reference(self, x, batch_sizes, h0, c0):
        """The equations, one step at a time, layer by layer, direction by direction."""
        mode = MODES[self.mode]
        D = self.num_directions
        if batch_sizes is None:                       # padded: every step has the whole batch
            T, B = x.shape[0], x.shape[1]
            sizes = [B] * T
            layer_input = x.reshape(T * B, x.shape[-1])  # (T*B, F), step t in rows t*B .. t*B+B
        else:                                         # packed: step t has batch_sizes[t] rows
            sizes = batch_sizes.tolist()
            layer_input = x                           # (sum of sizes, F)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                idx = layer * D + direction
                state = (h0[idx], c0[idx]) if mode.has_cell else (h0[idx],)
                out, state = self._run_direction(layer_input, sizes, state, layer, direction)
                outputs.append(out)
                h_n.append(state[0])
                if mode.has_cell:
                    c_n.append(state[1])
            layer_input = torch.cat(outputs, dim=-1)  # (sum of sizes, D*P)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        output = layer_input
        if batch_sizes is None:
            output = output.reshape(len(sizes), sizes[0], output.shape[-1])  # (T, B, D*P)
        return output, torch.stack(h_n), (torch.stack(c_n) if mode.has_cell else None)

    def _run_direction(self, layer_input, sizes, state, layer, direction):
        """One direction of one layer over all steps.

        ``state`` is (h,) or (h, c), each (B, ·). Returns the outputs h_t of every step, stacked as
        (sum of sizes, P), and the final state. Sequences are sorted longest first, so the active
        ones at step t are the first sizes[t] rows.
        """
        mode = MODES[self.mode]
        p = self._layer_params(layer, direction)
        gi_all = F.linear(layer_input, p["weight_ih"], p["bias_ih"])  # W_ih x_t + b_ih, all t at once
        gi_steps = gi_all.split(sizes)                                  # T x (b_t, G*H)
        steps = range(len(sizes))
        outputs: list[Tensor | None] = [None] * len(sizes)
        for t in (reversed(steps) if direction == 1 else steps):
            b = sizes[t]
            active = tuple(s[:b] for s in state)
            new, gates = mode.step(gi_steps[t], active if mode.has_cell else active[0],
                                   p["weight_hh"], p["bias_hh"], p["weight_hr"])
            new = new if mode.has_cell else (new,)
            h_t, c_t = new[0], (new[1] if mode.has_cell else None)
            for fn in self._step_hooks.values():
                fn(self, StepRecord(layer, direction, t, h_t, c_t, gates))
            outputs[t] = h_t
            # rows b.. are idle at step t (finished or, in reverse, not started): they keep their state
            state = new if b == len(state[0]) else tuple(torch.cat([n, s[b:]]) for n, s in zip(new, state))
        return torch.cat(outputs), state

    # ---- interchange with torch ------------------------------------------------------------------
    def _torch_kwargs(self) -> dict:
        kw = dict(num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                  dropout=self.dropout, bidirectional=self.bidirectional)
        if self.mode in ("RNN_TANH", "RNN_RELU"):
            kw["nonlinearity"] = "tanh" if self.mode == "RNN_TANH" else "relu"
        if self.proj_size:
            kw["proj_size"] = self.proj_size
        return kw

    @classmethod
    def from_torch(cls, m: nn.RNNBase) -> "RecurrentLayer":
        """Build the archlab layer equal to ``torch.nn.RNN/LSTM/GRU`` ``m`` (parameters copied)."""
        check_module_type(cls, m, getattr(nn, cls.__name__))
        kw = dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first,
                  dropout=m.dropout, bidirectional=m.bidirectional)
        if isinstance(m, nn.RNN):
            kw["nonlinearity"] = m.nonlinearity
        if m.proj_size:
            kw["proj_size"] = m.proj_size
        w = m.weight_ih_l0
        layer = cls(m.input_size, m.hidden_size, device=w.device, dtype=w.dtype, **kw)
        layer.train(m.training)
        layer.load_state_dict(m.state_dict())
        return layer

    def to_torch(self) -> nn.RNNBase:
        """The equal ``torch.nn`` module (parameters copied)."""
        cls = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}[MODES[self.mode].name]
        w = self.weight_ih_l0
        m = cls(self.input_size, self.hidden_size, device=w.device, dtype=w.dtype, **self._torch_kwargs())
        m.train(self.training)
        m.load_state_dict(self.state_dict())
        return m

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False)
        for key, value in self._torch_kwargs().items():
            if defaults.get(key) != value and key != "nonlinearity":
                s += f", {key}={value}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s + f", impl={self.impl!r}"


class RNN(RecurrentLayer):
    """Simple (Elman) RNN, h_t = tanh or ReLU(W_xh x_t + b_ih + W_hh h_{t-1} + b_hh); drop-in for
    ``torch.nn.RNN``: ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None):
        super().__init__(_rnn_mode(nonlinearity), input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, proj_size, device, dtype)
        self.nonlinearity = nonlinearity


class LSTM(RecurrentLayer):
    """Long short-term memory; drop-in for ``torch.nn.LSTM`` (``proj_size`` included); returns
    ``(output, (h_n, c_n))``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype)


class GRU(RecurrentLayer):
    """Gated recurrent unit; drop-in for ``torch.nn.GRU``; returns ``(output, h_n)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype)
