"""Time archlab's LSTM and GRU, reference and fused paths, against torch.nn (forward + backward).

    python benchmarks/bench_rnn.py                       # hidden 256, 2 layers, batch 32, length 100
    python benchmarks/bench_rnn.py --device cuda --repeats 20

Each repeat runs torch, fused and reference in turn (rotating the order, so that a machine that
gets busier or quieter during the run affects all three alike); the median is reported, with the
ratio to torch measured in the same process. All three share the same parameters and input.

On a CPU shared with other work, ``--clock cpu`` times the CPU this process used
(``time.process_time``) rather than the wall clock, which others' load inflates; use it with
``--threads 1``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from archlab.nn import GRU, LSTM
from archlab.utils.runtime import resolve_device

LAYERS = {"LSTM": (LSTM, nn.LSTM), "GRU": (GRU, nn.GRU)}


def step_time(module: nn.Module, x: torch.Tensor, clock=time.perf_counter) -> float:
    """Seconds for one forward + backward pass."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    module.zero_grad(set_to_none=True)
    x.grad = None
    sync()
    start = clock()
    output, _ = module(x)
    output.sum().backward()
    sync()
    return clock() - start


def bench(name: str, args, device: torch.device) -> dict[str, float]:
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    ours_cls, torch_cls = LAYERS[name]
    reference = torch_cls(args.input_size, args.hidden, args.layers, device=device)
    fused = ours_cls.from_torch(reference)
    slow = ours_cls.from_torch(reference)
    slow.impl = "reference"
    modules = {"torch": reference, "fused": fused, "reference": slow}
    x = torch.randn(args.length, args.batch, args.input_size, device=device, requires_grad=True)
    times: dict[str, list[float]] = {k: [] for k in modules}
    for _ in range(args.warmup):
        for m in modules.values():
            step_time(m, x, clock)
    order = list(modules)
    for r in range(args.repeats):
        for k in order[r % 3:] + order[:r % 3]:
            times[k].append(step_time(modules[k], x, clock))
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time (CPU device only)")
    p.add_argument("--models", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        p.error("--clock cpu measures CPU work only; use the wall clock on an accelerator")
    torch.manual_seed(0)
    print(f"forward+backward, {args.clock} clock, device={device}, threads={torch.get_num_threads()}, torch {torch.__version__}; "
          f"input {args.input_size}, hidden {args.hidden}, {args.layers} layers, batch {args.batch}, "
          f"length {args.length}; median of {args.repeats}")
    print(f"{'model':6} {'torch ms':>9} {'fused ms':>9} {'ref ms':>9} {'fused/torch':>12} {'ref/torch':>10}")
    for name in args.models:
        ms = bench(name, args, device)
        print(f"{name:6} {ms['torch']:9.1f} {ms['fused']:9.1f} {ms['reference']:9.1f} "
              f"{ms['fused'] / ms['torch']:12.3f} {ms['reference'] / ms['torch']:10.2f}")


if __name__ == "__main__":
    main()
