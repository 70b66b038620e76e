"""batchnorm_lr: batch normalisation lets a network train at higher learning rates.

Ioffe & Szegedy 2015 trained Inception with batch norm at 5 and 30 times the learning rate of the
network without it (and, in their Section 4.1, an MNIST network of three fully connected hidden
layers with and without it). Here one such network -- an MLP with three hidden layers of 256
units, ``mlp`` -- is trained with and without batch norm before each ReLU (``batch_norm``, the
only difference) across a grid of learning rates, by plain SGD with momentum 0.9 and no gradient
clipping (clipping would rescue the large rates and hide what normalisation does). A rate
"trains" when the test accuracy after the run reaches the threshold (chance is 10%); the result
is the largest rate that trains, for each.
"""

from __future__ import annotations

import math
from typing import Any

from archlab.experiments.core import NO_VALIDATION, Check, Column, Experiment, Lab, estimate, register_experiment

HIDDEN = (256, 256, 256)
ARMS = {"bn": "with batch norm", "plain": "without batch norm"}


@register_experiment
class BatchNormLR(Experiment):
    name = "batchnorm_lr"
    title = "Batch norm and the learning rate: the largest rate that still trains"
    claim = "Batch normalisation stabilises training and allows higher learning rates."
    texts = ("003",)
    source = ("Seed 003: \"Batch Normalization: Normalizes layer inputs, stabilizing training, allowing higher "
              "learning rates, and reducing sensitivity to initialization.\"")
    reference = ("Ioffe & Szegedy 2015, Figure 3: Inception reaches 72.2% in 31.0M steps at its learning rate "
                 "0.0015; with batch norm at 5x that rate (BN-x5) in 2.1M steps, at 30x (BN-x30) in 2.7M, ending "
                 "at 74.8%.")
    criterion = ("The largest learning rate that trains (test accuracy >= {threshold:.0%} after {steps} steps, on a "
                 "grid of about 3x steps) is larger with batch norm than without: their ratio > 1.")
    seconds = (10.0, 40.0)

    def protocol(self, size: str) -> dict[str, Any]:
        p = {"batch_size": 64, "momentum": 0.9, "weight_decay": 0.0, "threshold": 0.8, "hidden": list(HIDDEN),
             "lrs": [0.03, 0.1, 0.3, 1.0, 3.0, 10.0]}
        if size == "full":
            p.update(data="mnist5k", steps=500, lrs=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0])
        elif size == "quick":
            p.update(data="digits", steps=150, batch_size=32)
        else:
            p.update(data="digits", steps=3, batch_size=8, hidden=[16, 16], lrs=[0.01, 1.0])
        return p

    def measure(self, lab: Lab, p: dict[str, Any]) -> dict[str, Any]:
        lab.expect(len(ARMS) * len(p["lrs"]) * len(lab.seeds))
        accuracy = {arm: [[0.0] * len(lab.seeds) for _ in p["lrs"]] for arm in ARMS}
        loss = {arm: [[0.0] * len(lab.seeds) for _ in p["lrs"]] for arm in ARMS}
        for si, seed in enumerate(lab.seeds):
            for arm in ARMS:
                for k, lr in enumerate(p["lrs"]):
                    trainer = {"optimizer": "sgd", "lr": lr, "momentum": p["momentum"],
                               "weight_decay": p["weight_decay"], "grad_clip": 0.0, "batch_size": p["batch_size"],
                               "max_steps": p["steps"], "log_every": max(1, p["steps"] // 10)}
                    model = {"hidden": tuple(p["hidden"]), "batch_norm": arm == "bn", "dropout": 0.0}
                    run = lab.train(f"{arm}-lr{lr:g}-seed{seed}", task="classify", model="mlp", data=p["data"],
                                    trainer=trainer, task_settings=NO_VALIDATION, model_settings=model, seed=seed)
                    accuracy[arm][k][si] = run.metrics["accuracy"]
                    loss[arm][k][si] = run.metrics["loss"]
        return {"lrs": p["lrs"], "accuracy": accuracy, "loss": loss}

    def largest(self, m, p, arm) -> list[float]:
        """Per seed, the largest rate whose accuracy reaches the threshold (0 when none does)."""
        out = []
        for si in range(len(m["accuracy"][arm][0])):
            trained = [lr for lr, accs in zip(m["lrs"], m["accuracy"][arm])
                       if math.isfinite(accs[si]) and accs[si] >= p["threshold"]]
            out.append(max(trained, default=0.0))
        return out

    def judge(self, m, p) -> list[Check]:
        bn, plain = self.largest(m, p, "bn"), self.largest(m, p, "plain")
        ratio = [b / a if a > 0 else (math.inf if b > 0 else 0.0) for b, a in zip(bn, plain)]
        return [Check("largest learning rate that trains, with batch norm / without", estimate(ratio), ">", 1.0, "x")]

    def table(self, m, p):
        columns = [Column("network", "network")] + [Column(f"lr_{lr:g}", f"lr {lr:g}", "%") for lr in m["lrs"]]
        columns.append(Column("largest", "largest lr that trains", "{:g}"))
        rows = []
        for arm, label in ARMS.items():
            row: dict[str, Any] = {"network": label}
            for k, lr in enumerate(m["lrs"]):
                row[f"lr_{lr:g}"] = estimate(m["accuracy"][arm][k])
            row["largest"] = estimate(self.largest(m, p, arm))
            rows.append(row)
        return columns, rows

    def notes(self, m, p) -> list[str]:
        return [f"MLP {'-'.join(map(str, p['hidden']))}, test accuracy after {p['steps']} steps of SGD (momentum {p['momentum']}, batches of "
                f"{p['batch_size']}, cosine schedule, no clipping) on {p['data']}; 'trains' = accuracy >= "
                f"{p['threshold']:.0%}; a largest lr of 0 means no rate of the grid trained"]

    def plot(self, m, p, plt):
        fig, ax = plt.subplots(figsize=(7, 4))
        for arm, label in ARMS.items():
            ests = [estimate(v) for v in m["accuracy"][arm]]
            ax.errorbar(m["lrs"], [e.mean if math.isfinite(e.mean) else 0.0 for e in ests],
                        yerr=[e.half_width for e in ests], marker="o", capsize=3, label=label)
        ax.axhline(p["threshold"], color="grey", linestyle=":", label=f"'trains' ({p['threshold']:.0%})")
        ax.set(xscale="log", xlabel="learning rate (SGD, momentum 0.9)", ylabel="test accuracy", ylim=(0, 1.02),
               title="The same network with and without batch norm")
        ax.legend()
        fig.tight_layout()
        return fig
