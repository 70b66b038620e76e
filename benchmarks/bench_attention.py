"""Time archlab's attention blocks, reference and fused paths, against PyTorch's own modules.

Forward + backward of ``MultiHeadAttention`` (vs ``torch.nn.MultiheadAttention``) and
``TransformerEncoderLayer`` (vs ``torch.nn.TransformerEncoderLayer``), self-attention, batch first,
training mode (PyTorch's inference fast path does not apply to a backward pass). Prints the median
of ``--repeats`` timings in milliseconds and each time as a ratio of PyTorch's, measured in the
same process on the same inputs.

    python benchmarks/bench_attention.py        # d_model 512, 8 heads, batch 16, length 128; and a small size
    python benchmarks/bench_attention.py --repeats 10 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from archlab.nn import MultiHeadAttention, TransformerEncoderLayer, set_impl
from archlab.utils.runtime import resolve_device

# (d_model, heads, batch, length)
SIZES = {"large": (512, 8, 16, 128), "small": (128, 4, 8, 64)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(steps: dict, device: torch.device, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median milliseconds of each step; the steps take turns, so a change in machine load hits all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {k: [] for k in steps}
    for _ in range(repeats):
        for k, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def forward_backward(module: nn.Module, x: torch.Tensor, call):
    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        call(module, x).sum().backward()
    return step


def bench(size: str, device: torch.device, repeats: int, dropout: float) -> list[tuple[str, str, float, float]]:
    d, nh, B, T = SIZES[size]
    torch.manual_seed(0)
    x = torch.randn(B, T, d, device=device, requires_grad=True)
    rows = []
    mha = nn.MultiheadAttention(d, nh, dropout=dropout, batch_first=True, device=device)
    layer = nn.TransformerEncoderLayer(d, nh, 4 * d, dropout=dropout, batch_first=True, device=device)
    cases = [
        ("MultiHeadAttention", mha, MultiHeadAttention.from_torch, lambda m, x: m(x, x, x, need_weights=False)[0]),
        ("TransformerEncoderLayer", layer, TransformerEncoderLayer.from_torch, lambda m, x: m(x)),
    ]
    for name, ref, from_torch, call in cases:
        modules = {"torch": ref.train()}
        for impl in ("reference", "fused"):
            modules[impl] = set_impl(from_torch(ref), impl).train()
        ms = median_ms({k: forward_backward(m, x, call) for k, m in modules.items()}, device, repeats)
        rows += [(name, k, ms[k], ms[k] / ms["torch"]) for k in modules]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["large", "small"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}, forward + backward, dropout {args.dropout}")
    for size in args.sizes:
        d, nh, B, T = SIZES[size]
        print(f"\n{size}: d_model {d}, {nh} heads, batch {B}, length {T}")
        print(f"  {'module':<24} {'path':<10} {'ms':>9} {'vs torch':>9}")
        for name, impl, ms, ratio in bench(size, device, args.repeats, args.dropout):
            print(f"  {name:<24} {impl:<10} {ms:9.2f} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
