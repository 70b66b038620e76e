"""Time the recurrent sequence models on archlab's layers (fused and reference) against the same
models built on torch.nn's RNN/LSTM/GRU (one training step: forward, loss, backward).

    python benchmarks/bench_rnn_models.py                    # CPU, default sizes
    python benchmarks/bench_rnn_models.py --threads 1 --clock cpu --repeats 9

The torch twin is a deep copy of the model whose every recurrent layer is replaced by
``layer.to_torch()`` (same parameters), so all three variants compute the same function; the
largest difference of their losses is printed beside the timings. Each repeat runs the three in
a rotating order; the median is reported with the ratio to torch measured in the same process.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from archlab.nn import set_impl
from archlab.nn.recurrent import RecurrentLayer
from archlab.registry import create_model


def torch_twin(model: torch.nn.Module) -> torch.nn.Module:
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if isinstance(module, RecurrentLayer):
            parent, _, attr = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, attr, module.to_torch())
    return twin


def cases(B: int, T: int, H: int):
    """(name, model, loss function) at the sizes of a small real run."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (B, T + 1), generator=g)
    lm = create_model("lstm_lm", vocab_size=256, embed_dim=H, hidden_size=H, num_layers=2, dropout=0.0)
    yield "lstm_lm", lm, lambda m: F.cross_entropy(m(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())

    S = T // 3
    src, tgt = torch.randint(3, 64, (B, S), generator=g), torch.randint(3, 64, (B, S + 1), generator=g)
    src_lengths = torch.randint(S // 2, S + 1, (B,), generator=g)
    s2s = create_model("seq2seq_rnn", src_vocab_size=64, tgt_vocab_size=64, embed_dim=H // 2, hidden_size=H,
                       cell="gru", attention="additive", dropout=0.0)
    yield "seq2seq_rnn (gru)", s2s, lambda m: F.cross_entropy(
        m(src, tgt[:, :-1], src_lengths=src_lengths).flatten(0, 1), tgt[:, 1:].flatten())

    x = torch.randn(B, T, 28, generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    labels = torch.randint(0, 10, (B,), generator=g)
    clf = create_model("rnn_classifier", input_size=28, hidden_size=H, bidirectional=True, pooling="attention")
    yield "rnn_classifier (packed)", clf, lambda m: F.cross_entropy(m(x, lengths=lengths), labels)

    series = torch.randn(B, T, 1, generator=g)
    future = torch.randn(B, 12, 1, generator=g)
    fc = create_model("rnn_forecaster", cell="gru", strategy="autoregressive", hidden_size=H, context_length=T,
                      horizon=12)
    yield "rnn_forecaster (ar)", fc, lambda m: F.mse_loss(m(series), future)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=60)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    print(f"one training step (forward + backward), CPU, {args.clock} clock, threads={torch.get_num_threads()}, "
          f"torch {torch.__version__}; batch {args.batch}, length {args.length}, hidden {args.hidden}; "
          f"median of {args.repeats}")
    print(f"{'model':26s} {'torch ms':>9s} {'fused ms':>9s} {'ref ms':>9s} {'fused/torch':>12s} "
          f"{'ref/torch':>10s} {'max |dloss|':>12s}")
    for name, model, loss_fn in cases(args.batch, args.length, args.hidden):
        variants = {"torch": torch_twin(model), "fused": set_impl(copy.deepcopy(model), "fused"),
                    "reference": set_impl(copy.deepcopy(model), "reference")}
        times = {k: [] for k in variants}
        losses = {}
        order = list(variants)
        for r in range(args.repeats + 1):  # the first round warms up
            for k in order[r % 3:] + order[:r % 3]:
                m = variants[k]
                m.zero_grad(set_to_none=True)
                start = clock()
                loss = loss_fn(m)
                loss.backward()
                if r > 0:
                    times[k].append(clock() - start)
                losses[k] = loss.item()
        ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        diff = max(abs(losses[k] - losses["torch"]) for k in losses)
        print(f"{name:26s} {ms['torch']:9.1f} {ms['fused']:9.1f} {ms['reference']:9.1f} "
              f"{ms['fused'] / ms['torch']:12.2f} {ms['reference'] / ms['torch']:10.2f} {diff:12.2e}")


if __name__ == "__main__":
    main()
