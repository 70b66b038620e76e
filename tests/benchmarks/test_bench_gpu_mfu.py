"""The GPU MFU benchmark, checked on a CPU with a tiny GPT: it runs, and its FLOP formula counts right."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from archlab.nn import set_impl
from tests.conftest import REPO


def load_bench():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_gpu_mfu", REPO / "benchmarks" / "bench_gpu_mfu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up by name
    spec.loader.exec_module(module)
    return module


def test_the_flop_formula_equals_the_counted_flops_of_a_training_step(one_thread):
    bench = load_bench()
    for sizes in (bench.TINY, dict(n_layer=3, n_head=4, d_model=64, block_size=32, vocab_size=100)):
        shape = bench.Shape(**sizes)
        model = bench.build(shape, torch.device("cpu"), compile_model=False)[0]
        set_impl(model, "reference")  # attention as explicit matrix products, which torch's counter sees
        x = torch.randint(shape.vocab_size, (2, shape.block_size))
        with FlopCounterMode(display=False) as counter:
            model(x).float().sum().backward()  # forward and backward, as counted by torch
        counted_per_token = counter.get_total_flops() / x.numel()
        L, H, Q, T = shape.n_layer, shape.n_head, shape.d_model // shape.n_head, shape.block_size
        matrices = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and name != "wpe.weight")
        assert counted_per_token == 6 * matrices + 12 * L * H * Q * T
        # The formula also counts biases and norm gains as if they were multiply-adds (0.1% of GPT-2 small).
        vectors = sum(p.numel() for p in model.parameters() if p.dim() == 1)
        assert bench.flops_per_token(model, shape) == counted_per_token + 6 * vectors


def test_a_tiny_run_on_the_cpu_reports_throughput_and_mfu(one_thread, capsys):
    bench = load_bench()
    result = bench.main(["--device", "cpu", "--tiny", "--steps", "3", "--warmup", "1", "--window", "1",
                         "--no-compile", "--peak-flops", "1e11", "--batch-size", "4"])
    out = capsys.readouterr().out
    assert result["steps"] == 3 and result["tokens_per_s"] > 0
    assert result["mfu"] == pytest.approx(result["flops_per_token"] * result["tokens_per_s"] / 1e11)
    assert "MFU" in out and "6N + 12LHQT" in out and out.count("tokens/s") == 4  # 3 windows + the median
