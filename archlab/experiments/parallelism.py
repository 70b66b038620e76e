"""parallelism: a Transformer processes all positions at once; an RNN must go step by step.

Sequential steps are structure: an LSTM of L layers computes h_t from h_{t-1}, so a sequence of T
tokens is T x L dependent steps, whatever the hardware; a Transformer of L layers computes every
position of a layer in one batch of matrix products, L dependent steps for any T (its cost grows
instead as T^2 in attention, done in parallel).

Throughput is measurement: an LSTM language model (``lstm_lm``, 2 layers) and a GPT (``gpt``,
4 layers, d_model 128) with the same number of parameters (within 5%) are timed on real
optimiser steps of the ``lm`` task (``archlab.train.measure_step_seconds``: the median of several
steps after a warm-up) at sequence lengths from 32 to 1,024, with the same number of tokens per
batch, on this machine's device: on a CPU with one thread and (full protocol) with every core --
how much each model gains from a second core is parallelism too; ``--threads N`` measures at N
threads only -- on a GPU where there is one.
The verdict reports what this machine shows.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from archlab.experiments.core import Check, Column, Experiment, Lab, estimate, register_experiment

GPT = {"d_model": 128, "n_layer": 4, "n_head": 4, "dropout": 0.0}
LSTM_LAYERS = 2


def parameters_of(name: str, task, settings: dict[str, Any]) -> int:
    """Parameters of registered model ``name`` with ``settings``, trained on ``task``: the fields
    the task's data fixes come from the model class's own hook (``task.model_fields``); the model
    is built on the meta device (shapes only)."""
    from archlab.registry import create_model, model_config, model_info

    fixed = task.model_fields(model_info(name).model_class, model_config(name, **settings))
    with torch.device("meta"):
        return sum(t.numel() for t in create_model(name, **{**settings, **fixed}).parameters())


def lstm_hidden_for(params: int, task, embed_dim: int) -> int:
    """The ``lstm_lm`` hidden size (a multiple of 8) whose parameter count on ``task`` is closest to ``params``."""
    def count(h: int) -> int:
        return parameters_of("lstm_lm", task, {"embed_dim": embed_dim, "hidden_size": h, "num_layers": LSTM_LAYERS,
                                               "dropout": 0.0})

    return min(range(8, 1025, 8), key=lambda h: abs(count(h) - params))


@register_experiment
class Parallelism(Experiment):
    name = "parallelism"
    title = "Parallelism: Transformer vs LSTM training throughput against sequence length"
    claim = ("A Transformer processes every position of a sequence at once; an RNN must go step by step, which "
             "makes it slower to train.")
    texts = ("000", "001", "002")
    source = ("Seed 000: \"RNNs read one word at a time (sequential). This is slow\"; Transformers \"read the whole "
              "sentence at once\". Seed 001: \"Parallelization: Eliminates sequential processing\", \"Parallelizable, "
              "reducing computational cost\". Seed 002: attention lets them \"consider all tokens in a sequence "
              "simultaneously\".")
    reference = ("Vaswani et al. 2017, Table 1: sequential operations O(n) for a recurrent layer, O(1) for "
                 "self-attention (complexity per layer O(n d^2) vs O(n^2 d)); the base Transformer trained in 12 hours "
                 "on 8 P100 GPUs, a fraction of the recurrent models' training cost (Table 2).")
    criterion = ("At every sequence length measured, the Transformer trains more tokens per second than the LSTM of "
                 "equal parameters, on this machine's device.")
    seconds = (15.0, 150.0)

    def protocol(self, size: str) -> dict[str, Any]:
        cores = os.cpu_count() or 1
        p = {"data": "cmudict-words", "gpt": dict(GPT), "embed_dim": 128, "timing_steps": 5, "warmup": 2,
             "threads": [1]}
        if size == "full":
            p.update(lengths=[32, 64, 128, 256, 512, 1024], tokens_per_batch=8192,
                     threads=[1] + ([cores] if cores > 1 else []))
        elif size == "quick":
            p.update(lengths=[32, 256], tokens_per_batch=4096, timing_steps=3, warmup=1)
        else:
            p.update(lengths=[8, 32], tokens_per_batch=256, gpt={**GPT, "d_model": 32, "n_layer": 1},
                     embed_dim=32, timing_steps=1, warmup=0)
        return p

    def measure(self, lab: Lab, p: dict[str, Any]) -> dict[str, Any]:
        from archlab.tasks import get_task
        from archlab.train import RunSpec, measure_step_seconds

        lm = get_task("lm")
        task = lm(lm.Config(block_size=max(p["lengths"])), p["data"])  # parameters at the longest context
        gpt_params = parameters_of("gpt", task, p["gpt"])
        hidden = lstm_hidden_for(gpt_params, task, p["embed_dim"])
        models = {"lstm": ("lstm_lm", {"embed_dim": p["embed_dim"], "hidden_size": hidden, "num_layers": LSTM_LAYERS,
                                       "dropout": 0.0}),
                  "transformer": ("gpt", dict(p["gpt"]))}
        # CPU threads matter on a CPU only; a caller's --threads replaces the protocol's list.
        threads = ([lab.threads] if lab.threads else p["threads"]) if lab.device == "cpu" else [torch.get_num_threads()]
        lab.expect(len(models) * len(p["lengths"]) * len(threads) * len(lab.seeds))
        # seconds[arm][thread count index][length index] = one step's seconds per seed
        seconds: dict[str, list[list[list[float]]]] = {arm: [] for arm in models}
        params: dict[str, int] = {}
        before = torch.get_num_threads()
        for arm, (model, settings) in models.items():
            for n_threads in threads:
                torch.set_num_threads(n_threads)
                per_length = []
                for T in p["lengths"]:
                    per_seed = []
                    for seed in lab.seeds:
                        batch = max(1, p["tokens_per_batch"] // T)
                        spec = RunSpec(task="lm", model=model, data=p["data"], out=lab.out / "runs" / f"{arm}-T{T}",
                                       settings={**{f"model.{k}": v for k, v in settings.items()},
                                                 "task.block_size": T, "trainer.batch_size": batch, "seed": seed,
                                                 "device": lab.device})
                        per_seed.append(measure_step_seconds(spec, steps=p["timing_steps"], warmup=p["warmup"]))
                        lab.log(f"  {lab.tick()} {arm} T={T} threads {n_threads} seed {seed}: {batch} x {T} tokens, "
                                f"{1000 * per_seed[-1]:.0f} ms per step")
                    per_length.append(per_seed)
                seconds[arm].append(per_length)
            torch.set_num_threads(before)
            params[arm] = parameters_of(model, task, settings)
        return {"lengths": p["lengths"], "step_seconds": seconds, "params": params, "lstm_hidden": hidden,
                "batch_sizes": [max(1, p["tokens_per_batch"] // T) for T in p["lengths"]],
                "layers": {"lstm": LSTM_LAYERS, "transformer": p["gpt"]["n_layer"]}, "device": lab.device,
                "threads": threads}

    @staticmethod
    def throughput(m, arm, j, k) -> Any:
        """Training tokens per second of ``arm`` with thread count number ``j`` at length number ``k``."""
        tokens = m["batch_sizes"][k] * m["lengths"][k]
        return estimate(tokens / s for s in m["step_seconds"][arm][j][k])

    def ratio(self, m, j, k) -> Any:
        return estimate(a / b for a, b in zip(self.throughput(m, "transformer", j, k).values,
                                              self.throughput(m, "lstm", j, k).values))

    def judge(self, m, p) -> list[Check]:
        return [Check(f"T = {T}, {n} thread(s): Transformer tokens/s over LSTM tokens/s", self.ratio(m, j, k), ">",
                      1.0, "x")
                for j, n in enumerate(m["threads"]) for k, T in enumerate(m["lengths"])]

    def table(self, m, p):
        columns = [Column("T", "length T", "int"), Column("threads", "threads", "int"), Column("batch", "batch", "int"),
                   Column("lstm_steps", "LSTM sequential steps", "int"),
                   Column("transformer_steps", "Transformer sequential steps", "int"),
                   Column("lstm_tps", "LSTM tokens/s", "int"), Column("transformer_tps", "Transformer tokens/s", "int"),
                   Column("ratio", "Transformer / LSTM", "x")]
        rows = []
        for j, n in enumerate(m["threads"]):
            for k, T in enumerate(m["lengths"]):
                rows.append({"T": T, "threads": n, "batch": m["batch_sizes"][k], "lstm_steps": T * m["layers"]["lstm"],
                             "transformer_steps": m["layers"]["transformer"],
                             "lstm_tps": self.throughput(m, "lstm", j, k),
                             "transformer_tps": self.throughput(m, "transformer", j, k), "ratio": self.ratio(m, j, k)})
        return columns, rows

    def notes(self, m, p) -> list[str]:
        return [f"parameters: LSTM {m['params']['lstm']:,} (2 layers, hidden {m['lstm_hidden']}), Transformer "
                f"{m['params']['transformer']:,} (GPT, {p['gpt']['n_layer']} layers, d_model {p['gpt']['d_model']}); "
                f"{p['tokens_per_batch']:,} tokens per optimiser step; device {m['device']}; torch threads "
                f"{', '.join(map(str, m['threads']))}; sequential steps of one forward pass"]

    def plot(self, m, p, plt):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for i, (arm, label) in enumerate((("lstm", "LSTM"), ("transformer", "Transformer"))):
            for j, n in enumerate(m["threads"]):
                ests = [self.throughput(m, arm, j, k) for k in range(len(m["lengths"]))]
                left.errorbar(m["lengths"], [e.mean for e in ests], yerr=[e.half_width for e in ests], marker="o",
                              capsize=3, color=f"C{i}", linestyle="-" if j == len(m["threads"]) - 1 else "--",
                              label=f"{label}, {n} thread(s) ({m['params'][arm]:,} parameters)")
            steps = [T * m["layers"]["lstm"] if arm == "lstm" else m["layers"]["transformer"] for T in m["lengths"]]
            right.plot(m["lengths"], steps, marker="o", label=label)
        left.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="training tokens per second",
                 title=f"Training throughput ({m['device']})")
        right.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="dependent steps per forward pass",
                  title="Sequential steps")
        for ax in (left, right):
            ax.legend()
        fig.tight_layout()
        return fig
