"""Model FLOP utilisation: the share of the hardware's peak that the model's arithmetic uses.

    MFU = (training FLOPs per example * examples per second, all processes)
          / (peak FLOP/s of one device * number of processes)

Training FLOPs per example are counted, not guessed: PyTorch's ``FlopCounterMode`` counts the
forward pass (and loss) of one example (matrix multiplies, convolutions, attention, fused recurrent
kernels; see ``archlab.utils.flops`` for what is counted), and the backward pass
costs twice the forward (a gradient for the input and one for the weights), so training is 3x
forward. Examples per second count the *global* batch of an optimiser step -- every process and
every accumulation micro-step -- which makes the figure correct under DDP and accumulation.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from archlab.utils.flops import counting_flops

# Dense peak FLOP/s of one device from the vendors' data sheets: (bf16/fp16 tensor cores, fp32).
# Matched against torch.cuda.get_device_name() in order, the first substring that matches wins.
PEAK_FLOPS: list[tuple[str, tuple[float, float]]] = [
    ("H100 PCIe", (756e12, 51e12)),
    ("H100", (989e12, 67e12)),
    ("H200", (989e12, 67e12)),
    ("A100", (312e12, 19.5e12)),
    ("L40S", (362e12, 91.6e12)),
    ("L4", (121e12, 30.3e12)),
    ("A10", (125e12, 31.2e12)),
    ("RTX 4090", (165e12, 82.6e12)),
    ("RTX 3090", (71e12, 35.6e12)),
    ("V100", (125e12, 15.7e12)),
    ("T4", (65e12, 8.1e12)),
]


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Peak FLOP/s of one ``device`` at ``precision``, or None when the device is not in the table."""
    if device.type != "cuda":
        return None  # CPU peaks depend on the exact part and its vector units: pass peak_flops=
    name = torch.cuda.get_device_name(device)
    for key, (low, fp32) in PEAK_FLOPS:
        if key in name:
            return fp32 if precision == "fp32" else low
    return None


def forward_flops(model: torch.nn.Module, forward: Callable[[], Any]) -> int:
    """FLOPs of ``forward()`` (one forward pass of ``model``, in eval mode, without autograd)."""
    with counting_flops(model) as counter:
        forward()
    return int(counter.get_total_flops())


def mfu(train_flops_per_example: float, examples_per_s: float, world_size: int, peak: float | None) -> float | None:
    """Utilisation in [0, 1] of ``world_size`` devices of ``peak`` FLOP/s each, or None without a peak."""
    if not peak:
        return None
    return train_flops_per_example * examples_per_s / (peak * world_size)
