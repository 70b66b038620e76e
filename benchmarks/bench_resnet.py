"""Time ResNet-18's forward pass: archlab's fused path, its reference path, and torchvision's model.

    python benchmarks/bench_resnet.py                      # batch 8, 224x224, CPU, inference
    python benchmarks/bench_resnet.py --model resnet50 --repeats 10 --threads 2

The fused path calls PyTorch's convolution / pooling / batch-norm kernels; the reference path runs
the readable convolution (a matrix product per kernel tap), window pooling and batch-norm
equations (``archlab.nn.set_impl``).
torchvision is timed only when it can be imported (it is not an archlab dependency): it receives
our weights through ``load_state_dict(strict=True)``, which also shows that the layouts agree.

Each repeat runs every contender in turn, rotating the order (a machine that gets busier or quieter
during the run affects all alike); the median is reported, with ratios to the fused path measured
in the same process. The outputs of all contenders are compared before timing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn

import archlab
from archlab.nn import set_impl
from archlab.utils.runtime import resolve_device


def forward_time(model: nn.Module, x: torch.Tensor) -> float:
    """Seconds for one forward pass without autograd."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.no_grad():
        model(x)
    sync()
    return time.perf_counter() - start


def contenders(name: str, device: torch.device) -> dict[str, nn.Module]:
    fused = archlab.create_model(name).to(device).eval()
    models = {"fused": fused, "reference": set_impl(copy.deepcopy(fused), "reference")}
    try:
        import torchvision
    except ImportError:
        return models
    tv = getattr(torchvision.models, name)(weights=None).to(device).eval()
    tv.load_state_dict(fused.state_dict(), strict=True)
    models[f"torchvision {torchvision.__version__}"] = tv
    return models


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18", choices=[f"resnet{d}" for d in (18, 34, 50, 101, 152)])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    models = contenders(args.model, device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)

    with torch.no_grad():
        outputs = {k: m(x) for k, m in models.items()}
    diffs = {k: (v - outputs["fused"]).abs().max().item() for k, v in outputs.items() if k != "fused"}

    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.warmup):
        for m in models.values():
            forward_time(m, x)
    order = list(models)
    for r in range(args.repeats):
        for k in order[r % len(order):] + order[: r % len(order)]:
            times[k].append(forward_time(models[k], x))
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}

    print(f"{args.model} forward (inference), batch {args.batch}, {args.size}x{args.size}, device={device}, "
          f"threads={torch.get_num_threads()}, torch {torch.__version__}; median of {args.repeats}")
    print(f"{'path':24} {'ms':>9} {'img/s':>8} {'x fused':>8} {'max |diff| vs fused':>20}")
    for k in models:
        diff = "-" if k == "fused" else f"{diffs[k]:.2e}"
        print(f"{k:24} {ms[k]:9.1f} {args.batch / ms[k] * 1e3:8.1f} {ms[k] / ms['fused']:8.2f} {diff:>20}")


if __name__ == "__main__":
    main()
