"""Convolution speed: archlab's reference (a matrix product per kernel tap) and fused paths against torch's nn.Conv2d.

Times forward + backward (input and weight gradients) at a few realistic layer shapes and prints
medians and ratios against torch measured in the same process::

    python benchmarks/bench_conv.py                       # CPU, float32
    python benchmarks/bench_conv.py --device cuda --repeats 50
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from archlab.nn import Conv2d
from archlab.utils.runtime import resolve_device

# name: (batch, in_channels, out_channels, kernel, stride, groups, H=W)
SHAPES = {
    "resnet 64->64 3x3 @56": (8, 64, 64, 3, 1, 1, 56),
    "strided 128->256 3x3/2 @28": (8, 128, 256, 3, 2, 1, 28),
    "depthwise 144 3x3 @56": (8, 144, 144, 3, 1, 144, 56),
}


def time_fwd_bwd(module: nn.Module, x: torch.Tensor, repeats: int, warmup: int) -> float:
    """Median seconds of one forward + backward."""
    times = []
    for i in range(warmup + repeats):
        x.grad = None
        module.zero_grad(set_to_none=True)
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        module(x).sum().backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    device, dtype = resolve_device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    print(f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} repeats={args.repeats} "
          "(median ms of forward+backward; ratio = time / torch's)")
    print(f"{'shape':30s} {'torch':>9s} {'fused':>9s} {'reference':>10s} {'fused/torch':>12s} {'ref/torch':>10s}")
    for name, (B, cin, cout, k, s, g, hw) in SHAPES.items():
        theirs = nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=g).to(device, dtype)
        ours = Conv2d.from_torch(theirs)
        x = torch.randn(B, cin, hw, hw, device=device, dtype=dtype, requires_grad=True)
        t_torch = time_fwd_bwd(theirs, x, args.repeats, args.warmup)
        ours.impl = "fused"
        t_fused = time_fwd_bwd(ours, x, args.repeats, args.warmup)
        ours.impl = "reference"
        t_ref = time_fwd_bwd(ours, x, args.repeats, args.warmup)
        print(f"{name:30s} {t_torch * 1e3:9.2f} {t_fused * 1e3:9.2f} {t_ref * 1e3:10.2f} "
              f"{t_fused / t_torch:12.2f} {t_ref / t_torch:10.2f}")


if __name__ == "__main__":
    main()
