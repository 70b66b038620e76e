"""GPT-2 small (124M) training throughput and model FLOP utilisation (MFU), bf16, on one GPU.

archlab's own GPT (``archlab.create_model("gpt", ...)``, GPT-2 small's shape: 12 layers, 12 heads,
d_model 768, context 1024, vocabulary 50257 padded to 50304 as nanoGPT does) trains on random
tokens -- throughput does not depend on the text -- with AdamW (fused on CUDA), bf16 autocast,
gradient clipping and ``torch.compile``, for ``--seconds`` after a warm-up. Printed: tokens/s and
MFU per window of steps, their medians, and peak memory.

FLOPs per token (PaLM, Chowdhery et al. 2022, appendix B; the estimate nanoGPT uses):

    6 N + 12 L H Q T      N parameters (position embeddings excluded: a lookup, no multiply; the
                          token embedding counts once, as the tied output head's matrix product),
                          L layers, H heads, Q head size, T context

6 N: a multiply-add (2 FLOPs) per parameter per token forward, twice that backward. 12 L H Q T:
attention's Q K^T and A V, 2 T Q FLOPs each per head and token forward, x3 with backward, counted
in full although the causal mask makes half of them zeros (the usual convention). Norms, biases,
activations and the optimiser are not counted. MFU = FLOPs per token * tokens/s / peak FLOP/s of
the device (``archlab.train.mfu.PEAK_FLOPS``: the dense bf16 tensor-core figure; ``--peak-flops``
for another device).

    python benchmarks/bench_gpu_mfu.py                            # CUDA, 3 minutes measured
    python benchmarks/bench_gpu_mfu.py --seconds 60 --batch-size 8
    python benchmarks/bench_gpu_mfu.py --device cpu --tiny --steps 3 --no-compile --peak-flops 1e11  # a check
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, peak_memory_mb, reset_peak_memory, sync  # noqa: E402

import archlab  # noqa: E402
from archlab.train.mfu import peak_flops  # noqa: E402
from archlab.utils.runtime import resolve_device  # noqa: E402

GPT2_SMALL = dict(n_layer=12, n_head=12, d_model=768, block_size=1024, vocab_size=50304)
TINY = dict(n_layer=2, n_head=2, d_model=32, block_size=16, vocab_size=64)


@dataclass
class Shape:
    n_layer: int
    n_head: int
    d_model: int
    block_size: int
    vocab_size: int


def flops_per_token(model: torch.nn.Module, shape: Shape) -> float:
    """6 N + 12 L H Q T (see the module docstring); N without the position embeddings."""
    n = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    L, H, Q, T = shape.n_layer, shape.n_head, shape.d_model // shape.n_head, shape.block_size
    return 6 * n + 12 * L * H * Q * T


def build(shape: Shape, device: torch.device, compile_model: bool):
    model = archlab.create_model("gpt", **vars(shape), dropout=0.0, activation="gelu_tanh").to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=6e-4, betas=(0.9, 0.95), **fused)
    return model, (torch.compile(model) if compile_model else model), optimizer


def make_step(model, core, optimizer, shape: Shape, batch_size: int, grad_accum: int, device, dtype):
    g = torch.Generator(device=device).manual_seed(0)

    def step():
        for _ in range(grad_accum):
            tokens = torch.randint(shape.vocab_size, (batch_size, shape.block_size + 1), device=device, generator=g)
            x, y = tokens[:, :-1], tokens[:, 1:]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                logits = core(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten()) / grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per micro-step (default 16)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimiser step")
    p.add_argument("--seconds", type=float, default=180.0, help="measured time after the warm-up (default 180)")
    p.add_argument("--steps", type=int, default=0, help="measure this many steps instead of --seconds")
    p.add_argument("--warmup", type=int, default=10, help="steps before measuring (compilation happens here)")
    p.add_argument("--window", type=int, default=10, help="steps per reported window")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="eager mode")
    p.add_argument("--peak-flops", type=float, default=0.0, help="peak FLOP/s of the device (default: looked up)")
    p.add_argument("--tiny", action="store_true", help="a 2-layer, 32-wide GPT (a quick check, e.g. on a CPU)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    shape = Shape(**(TINY if args.tiny else GPT2_SMALL))
    torch.manual_seed(0)
    model, core, optimizer = build(shape, device, args.compile)
    per_token = flops_per_token(model, shape)
    peak = args.peak_flops or peak_flops(device, args.precision)
    tokens_per_step = args.batch_size * args.grad_accum * shape.block_size
    print(machine_line(device))
    if device.type == "cuda":
        print(f"GPU {torch.cuda.get_device_name(device)}")
    n_params = sum(q.numel() for q in model.parameters())
    print(f"GPT {shape.n_layer}x{shape.n_head}x{shape.d_model}, context {shape.block_size}, vocab {shape.vocab_size}: "
          f"{n_params / 1e6:.1f}M parameters; {args.precision}, compile={args.compile}; {tokens_per_step:,} tokens "
          f"per step; {per_token / 1e9:.3f} GFLOP per token (6N + 12LHQT); peak "
          + (f"{peak / 1e12:.4g} TFLOP/s" if peak else "unknown (pass --peak-flops for MFU)"))
    step = make_step(model, core, optimizer, shape, args.batch_size, args.grad_accum, device, dtype)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    print(f"warm-up: {args.warmup} steps in {time.perf_counter() - t0:.1f} s")
    reset_peak_memory()
    windows, steps, start = [], 0, time.perf_counter()
    window_start = start
    while True:
        loss = step()
        steps += 1
        if steps % args.window == 0 or steps == args.steps:
            sync(device)
            now = time.perf_counter()
            n = args.window if steps % args.window == 0 else steps % args.window
            tok_s = n * tokens_per_step / (now - window_start)
            util = per_token * tok_s / peak if peak else None
            windows.append((tok_s, util))
            print(f"steps {steps - n + 1:>5}-{steps:<5} {tok_s:12,.0f} tokens/s" + (f"  MFU {util:6.1%}" if peak else "")
                  + f"  loss {loss.item() * args.grad_accum:.3f}", flush=True)
            window_start = now
            if (args.steps and steps >= args.steps) or (not args.steps and now - start >= args.seconds):
                break
    tok_s = statistics.median(w[0] for w in windows)
    util = per_token * tok_s / peak if peak else None
    memory = peak_memory_mb(device)
    print(f"median over {len(windows)} window(s), {steps} steps, {time.perf_counter() - start:.0f} s: "
          f"{tok_s:,.0f} tokens/s" + (f", MFU {util:.1%}" if peak else "") + f", peak memory {memory:,.0f} MB")
    assert math.isfinite(loss.item()), "the loss is not finite"
    return {"tokens_per_s": tok_s, "mfu": util, "flops_per_token": per_token, "steps": steps, "peak_mb": memory}


if __name__ == "__main__":
    main()
