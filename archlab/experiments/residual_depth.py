"""residual_depth: residual connections make very deep networks trainable.

He et al. 2015 (Section 4.2, Figure 6) trained the CIFAR networks of 6n + 2 layers with and
without their skip connections: the plain network's training error *rises* from 20 to 56 layers
-- deeper is worse, though it could copy the shallower one and add identities -- while the
residual network's falls. archlab registers the same networks (``plain20`` .. ``plain110``,
``resnet20`` .. ``resnet110``: one ResNet class, ``residual=False`` for the plain twin).

CIFAR-10 is not available offline, so the protocol runs on the real images that are: MNIST-5k
(28 x 28, the full protocol) or scikit-learn's 8 x 8 digits (the quick one). Every network gets
the same steps of SGD with momentum 0.9 (He et al.'s optimiser, no gradient clipping), and is
then scored on the whole training set (loss and error, in evaluation mode: the optimisation
result) and on the test set (accuracy).
"""

from __future__ import annotations

import math
from typing import Any

from archlab.experiments.core import NO_VALIDATION, Check, Column, Experiment, Lab, estimate, register_experiment


@register_experiment
class ResidualDepth(Experiment):
    name = "residual_depth"
    title = "Residual depth: plain vs residual networks of 20 to 56 layers"
    claim = "Residual (skip) connections make very deep networks trainable: without them, a deeper network trains worse."
    texts = ("000", "003")
    source = ("Seed 003: \"ResNet (2015): Introduced skip connections, enabling 100+ layer networks\"; \"Residual "
              "connections allow gradients to flow directly through the network, enabling training of very deep "
              "networks (100+ layers). y = F(x) + x\". Seed 000: the residual connection \"creates a 'highway' for "
              "gradients to flow during backpropagation, preventing the 'vanishing gradient' problem in deep networks\".")
    reference = ("He et al. 2015, Figure 6 and Table 6 (CIFAR-10): plain-56 has higher training and test error than "
                 "plain-20; ResNet-56 lower than ResNet-20 (test error 8.75% for ResNet-20, 6.97% for ResNet-56, "
                 "6.43% for ResNet-110).")
    criterion = ("After equal steps, plain-{deepest} has a higher training loss than plain-{shallowest} (the plain "
                 "network degrades with depth), ResNet-{deepest} a lower training loss and a higher test accuracy "
                 "than plain-{deepest}.")
    seconds = (30.0, 400.0)

    def protocol(self, size: str) -> dict[str, Any]:
        p = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "grad_clip": 0.0}
        if size == "full":
            p.update(data="mnist5k", depths=[20, 56], steps=400, batch_size=32)
        elif size == "quick":
            p.update(data="digits", depths=[20, 56], steps=100, batch_size=32)
        else:
            p.update(data="digits", depths=[20, 56], steps=3, batch_size=8)
        p["shallowest"], p["deepest"] = min(p["depths"]), max(p["depths"])
        return p

    def measure(self, lab: Lab, p: dict[str, Any]) -> dict[str, Any]:
        lab.expect(2 * len(p["depths"]) * len(lab.seeds))
        keys = ("train_loss", "train_error", "test_accuracy")
        out: dict[str, Any] = {k: {} for k in keys}
        curves: dict[str, list] = {}
        for seed in lab.seeds:
            for depth in p["depths"]:
                for kind in ("plain", "resnet"):
                    arm = f"{kind}{depth}"
                    trainer = {k: p[k] for k in ("optimizer", "lr", "momentum", "weight_decay", "grad_clip",
                                                 "batch_size")}
                    trainer.update(max_steps=p["steps"], warmup_steps=p["steps"] // 20,
                                   log_every=max(1, p["steps"] // 20))
                    run = lab.train(f"{arm}-seed{seed}", task="classify", model=arm, data=p["data"],
                                    trainer=trainer, task_settings=NO_VALIDATION, seed=seed)
                    train = lab.evaluate(run, split="train")
                    # A diverged run (NaN loss) trained infinitely badly: inf keeps the comparisons right.
                    loss = train["loss"] if math.isfinite(train["loss"]) else math.inf
                    out["train_loss"].setdefault(arm, []).append(loss)
                    out["train_error"].setdefault(arm, []).append(1.0 - train["accuracy"])
                    out["test_accuracy"].setdefault(arm, []).append(run.metrics["accuracy"])
                    curves.setdefault(arm, []).append(run.curve)
        return {**out, "depths": p["depths"], "curves": curves}

    def judge(self, m, p) -> list[Check]:
        lo, hi = p["shallowest"], p["deepest"]
        loss, acc = m["train_loss"], m["test_accuracy"]
        return [
            Check(f"training loss, plain-{hi} minus plain-{lo}", estimate(loss[f"plain{hi}"]) - estimate(loss[f"plain{lo}"]),
                  ">", 0.0),
            Check(f"training loss, plain-{hi} minus ResNet-{hi}",
                  estimate(loss[f"plain{hi}"]) - estimate(loss[f"resnet{hi}"]), ">", 0.0),
            Check(f"test accuracy, ResNet-{hi} minus plain-{hi}",
                  estimate(acc[f"resnet{hi}"]) - estimate(acc[f"plain{hi}"]), ">", 0.0, "%"),
        ]

    def table(self, m, p):
        columns = [Column("network", "network"), Column("layers", "layers", "int"),
                   Column("train_loss", "training loss", "{:.4f}"), Column("train_error", "training error", "%"),
                   Column("test_accuracy", "test accuracy", "%")]
        rows = []
        for kind, label in (("plain", "plain"), ("resnet", "ResNet")):
            for depth in m["depths"]:
                arm = f"{kind}{depth}"
                rows.append({"network": f"{label}-{depth}", "layers": depth,
                             **{k: estimate(m[k][arm]) for k in ("train_loss", "train_error", "test_accuracy")}})
        return columns, rows

    def notes(self, m, p) -> list[str]:
        return [f"{p['steps']} steps of SGD (lr {p['lr']}, momentum {p['momentum']}, weight decay {p['weight_decay']}, "
                f"cosine schedule) with batches of {p['batch_size']} on {p['data']} (CIFAR-10 is not available "
                "offline); training loss and error on the whole training set in evaluation mode"]

    def plot(self, m, p, plt):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for i, depth in enumerate(m["depths"]):
            for kind, style in (("plain", "--"), ("resnet", "-")):
                curve = m["curves"][f"{kind}{depth}"][0]  # the first seed's training curve
                if curve:
                    steps, losses = zip(*curve)
                    left.plot(steps, losses, style, color=f"C{i}",
                              label=f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}")
        left.set(yscale="log", xlabel="step", ylabel="training loss (window mean)",
                 title="Training curves (dashed: plain, solid: residual)")
        left.legend(fontsize=8)
        for kind, label in (("plain", "plain"), ("resnet", "ResNet")):
            ests = [estimate(m["train_loss"][f"{kind}{d}"]) for d in m["depths"]]
            right.errorbar(m["depths"], [e.mean for e in ests], yerr=[e.half_width for e in ests], marker="o",
                           capsize=3, label=label)
        right.set(xlabel="layers", ylabel="final training loss", yscale="log", xticks=m["depths"],
                  title="Final training loss against depth")
        right.legend()
        fig.tight_layout()
        return fig
