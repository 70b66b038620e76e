"""Every two-path block of ``archlab.nn`` against PyTorch's own module: forward + backward.

For each block, torch's module, archlab's ``fused`` path and its ``reference`` path (the equation
written out) share parameters and input, take turns (the order rotating every repeat), and the
median of ``--repeats`` is printed with its ratio to torch's time measured in the same process. Beside
the time: the activation memory each path holds for its backward pass (bytes of the distinct
tensors autograd saves), the part of a training step's peak memory that depends on the path.

    python benchmarks/bench_blocks.py                             # every block, CPU, wall clock
    python benchmarks/bench_blocks.py --threads 1 --clock cpu     # a busy shared machine: CPU time
    python benchmarks/bench_blocks.py --only conv lstm --repeats 30

The targets: fused <= 1.05x torch, reference <= 3x torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, medians_in_turns, saved_for_backward_bytes, steady_allocator, STEADY_MALLOC  # noqa: E402

import archlab.nn as anl  # noqa: E402
from archlab.utils.runtime import resolve_device  # noqa: E402


def _seq(m, x):
    return m(x)[0]


# name: (torch module factory, archlab class, input shape, call). Shapes are those of real models:
# ResNet-18's layer1 convolution, a MobileNet depthwise layer, a ResNet stem pool, a GPT block's norm...
CASES = {
    "conv 64->64 3x3 @56 (ResNet)": (lambda: nn.Conv2d(64, 64, 3, padding=1), anl.Conv2d, (8, 64, 56, 56), None),
    "conv 128->256 3x3/2 @28": (lambda: nn.Conv2d(128, 256, 3, stride=2, padding=1), anl.Conv2d, (8, 128, 28, 28),
                                None),
    "conv depthwise 144 3x3 @56": (lambda: nn.Conv2d(144, 144, 3, padding=1, groups=144), anl.Conv2d,
                                   (8, 144, 56, 56), None),
    "conv1d 64->64 k3 @512": (lambda: nn.Conv1d(64, 64, 3, padding=1), anl.Conv1d, (16, 64, 512), None),
    "maxpool 3x3/2 @112": (lambda: nn.MaxPool2d(3, 2, 1), anl.MaxPool2d, (8, 64, 112, 112), None),
    "avgpool 2x2/2 @56": (lambda: nn.AvgPool2d(2, 2), anl.AvgPool2d, (8, 64, 56, 56), None),
    "adaptive avg -> 1x1 @7": (lambda: nn.AdaptiveAvgPool2d(1), anl.AdaptiveAvgPool2d, (32, 512, 7, 7), None),
    "adaptive max 13 -> 6": (lambda: nn.AdaptiveMaxPool2d(6), anl.AdaptiveMaxPool2d, (8, 256, 13, 13), None),
    "batchnorm2d 64 @56": (lambda: nn.BatchNorm2d(64), anl.BatchNorm2d, (8, 64, 56, 56), None),
    "layernorm 512": (lambda: nn.LayerNorm(512), anl.LayerNorm, (16, 128, 512), None),
    "rnn 256, 2 layers": (lambda: nn.RNN(256, 256, 2), anl.RNN, (100, 32, 256), _seq),
    "lstm 256, 2 layers": (lambda: nn.LSTM(256, 256, 2), anl.LSTM, (100, 32, 256), _seq),
    "gru 256, 2 layers": (lambda: nn.GRU(256, 256, 2), anl.GRU, (100, 32, 256), _seq),
    "multihead attention 512/8": (lambda: nn.MultiheadAttention(512, 8, batch_first=True), anl.MultiHeadAttention,
                                  (16, 128, 512), lambda m, x: m(x, x, x, need_weights=False)[0]),
    "encoder layer 512/8": (lambda: nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.0, batch_first=True),
                            anl.TransformerEncoderLayer, (16, 128, 512), None),
}


def run_case(name: str, args, device: torch.device) -> dict:
    make, ours_cls, shape, call = CASES[name]
    call = call or (lambda m, x: m(x))
    torch.manual_seed(0)
    theirs = make().to(device).train()
    modules = {"torch": theirs}
    for impl in ("fused", "reference"):
        modules[impl] = anl.set_impl(ours_cls.from_torch(theirs), impl).to(device).train()
    x = torch.randn(*shape, device=device, requires_grad=True)

    def step_of(m):
        def step():
            m.zero_grad(set_to_none=True)
            x.grad = None
            call(m, x).float().sum().backward()
        return step

    seconds = medians_in_turns({k: step_of(m) for k, m in modules.items()}, repeats=args.repeats,
                               warmup=args.warmup, clock=args.clock, device=device)
    saved = {k: saved_for_backward_bytes(lambda m=m: call(m, x)) / 2**20 for k, m in modules.items()}
    return {"ms": {k: v * 1e3 for k, v in seconds.items()}, "saved_mb": saved}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="WORD", help="only the blocks whose name contains one of these")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time (CPU only; steadier on a busy machine)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if argv is None:
        steady_allocator()  # (a run from the command line starts again with glibc's settings)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        p.error("--clock cpu measures CPU work only; use the wall clock on an accelerator")
    names = [n for n in CASES if not args.only or any(w in n for w in args.only)]
    print(machine_line(device))
    steady = all(os.environ.get(k) == v for k, v in STEADY_MALLOC.items())
    print(f"forward+backward, float32, {args.clock} clock, median of {args.repeats}; ratio = time / torch's time; "
          f"saved = activation memory held for the backward pass; freed memory {'kept' if steady else 'returned'} "
          "by glibc")
    head = f"{'block':30} {'torch ms':>9} {'fused ms':>9} {'ref ms':>9} {'fused/torch':>11} {'ref/torch':>9}"
    print(head + f" {'saved MB torch/fused/ref':>25}")
    for name in names:
        r = run_case(name, args, device)
        ms, mb = r["ms"], r["saved_mb"]
        print(f"{name:30} {ms['torch']:9.2f} {ms['fused']:9.2f} {ms['reference']:9.2f} "
              f"{ms['fused'] / ms['torch']:11.3f} {ms['reference'] / ms['torch']:9.2f} "
              f"{mb['torch']:9.1f}/{mb['fused']:.1f}/{mb['reference']:.1f}", flush=True)


if __name__ == "__main__":
    main()
