"""dropout: randomly dropping units while training reduces overfitting.

Srivastava et al. 2014 trained the same networks with and without dropout; the gain is largest
when the network is big and the data small enough to overfit. Here an MLP with two hidden layers
of 1,024 units (about 1.9M parameters) is trained on 1,000 MNIST-5k digits (``train_size``: a
fixed random subset) with and without dropout p = 0.5 after each hidden layer -- the only
difference; no weight decay for either -- for the same steps, long enough that the network
without dropout fits its training set. Both are scored on the images they trained on
(``split="train"``) and on the 1,000 test digits; the train / test accuracy gap measures
the overfitting.
"""

from __future__ import annotations

from typing import Any

from archlab.experiments.core import NO_VALIDATION, Check, Column, Experiment, Lab, estimate, register_experiment

ARMS = {"dropout": "MLP, dropout 0.5", "none": "MLP, no dropout"}


@register_experiment
class Dropout(Experiment):
    name = "dropout"
    title = "Dropout and overfitting: train / test gap on a small training set"
    claim = "Dropout reduces overfitting: the gap between training and test accuracy shrinks and generalisation improves."
    texts = ("003",)
    source = ("Seed 003: \"Dropout Regularization: Randomly drops neurons during training, preventing co-adaptation and "
              "improving generalization. Essential for preventing overfitting.\"")
    reference = ("Srivastava et al. 2014, Table 2 (MNIST, 60,000 images): test error 1.60% for a standard network, "
                 "1.35% with dropout (3 x 1,024 logistic units), 1.25% with ReLU; their Figure 9: with 1,000 or more "
                 "training images dropout lowers the test error, with 100 or 500 it does not help.")
    criterion = ("With dropout the train - test accuracy gap is smaller and the test accuracy higher than without, "
                 "after {steps} steps on {train_size} training images.")
    seconds = (15.0, 90.0)

    def protocol(self, size: str) -> dict[str, Any]:
        p = {"data": "mnist5k", "train_size": 1000, "hidden": [1024, 1024], "p": 0.5, "batch_size": 64, "lr": 1e-3}
        if size == "full":
            p.update(steps=2000)
        elif size == "quick":
            p.update(steps=400)
        else:
            p.update(train_size=64, hidden=[32, 32], steps=4, batch_size=16)
        return p

    def measure(self, lab: Lab, p: dict[str, Any]) -> dict[str, Any]:
        lab.expect(len(ARMS) * len(lab.seeds))
        keys = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")
        out: dict[str, Any] = {k: {arm: [] for arm in ARMS} for k in keys}
        curves: dict[str, list] = {arm: [] for arm in ARMS}
        for seed in lab.seeds:
            for arm in ARMS:
                trainer = {"batch_size": p["batch_size"], "lr": p["lr"], "weight_decay": 0.0, "max_steps": p["steps"],
                           "log_every": max(1, p["steps"] // 25)}
                model = {"hidden": tuple(p["hidden"]), "dropout": p["p"] if arm == "dropout" else 0.0}
                run = lab.train(f"{arm}-seed{seed}", task="classify", model="mlp", data=p["data"], trainer=trainer,
                                task_settings={**NO_VALIDATION, "train_size": p["train_size"]}, model_settings=model,
                                seed=seed)
                train = lab.evaluate(run, split="train")
                out["train_accuracy"][arm].append(train["accuracy"])
                out["train_loss"][arm].append(train["loss"])
                out["test_accuracy"][arm].append(run.metrics["accuracy"])
                out["test_loss"][arm].append(run.metrics["loss"])
                curves[arm].append(run.curve)
        return {**out, "curves": curves}

    def gap(self, m, arm):
        return estimate(m["train_accuracy"][arm]) - estimate(m["test_accuracy"][arm])

    def judge(self, m, p) -> list[Check]:
        return [
            Check("train - test accuracy gap, without dropout minus with", self.gap(m, "none") - self.gap(m, "dropout"),
                  ">", 0.0, "%"),
            Check("test accuracy, with dropout minus without",
                  estimate(m["test_accuracy"]["dropout"]) - estimate(m["test_accuracy"]["none"]), ">", 0.0, "%"),
        ]

    def table(self, m, p):
        columns = [Column("model", "model"), Column("train_accuracy", "train accuracy", "%"),
                   Column("test_accuracy", "test accuracy", "%"), Column("gap", "gap", "%"),
                   Column("train_loss", "train loss", "{:.2e}"), Column("test_loss", "test loss", "{:.3f}")]
        rows = [{"model": label, "gap": self.gap(m, arm),
                 **{k: estimate(m[k][arm]) for k in ("train_accuracy", "test_accuracy", "train_loss", "test_loss")}}
                for arm, label in ARMS.items()]
        return columns, rows

    def notes(self, m, p) -> list[str]:
        return [f"MLP 784-{'-'.join(map(str, p['hidden']))}-10 trained {p['steps']} steps (batches of {p['batch_size']}, "
                f"AdamW lr {p['lr']}, no weight decay) on {p['train_size']} {p['data']} images; train metrics on those "
                "images in evaluation mode (no units dropped)"]

    def plot(self, m, p, plt):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for i, (arm, label) in enumerate(ARMS.items()):
            curve = m["curves"][arm][0]
            if curve:
                steps, losses = zip(*curve)
                left.plot(steps, losses, color=f"C{i}", label=f"{label}: training loss (first seed)")
            left.axhline(estimate(m["test_loss"][arm]).mean, color=f"C{i}", linestyle="--",
                         label=f"{label}: final test loss")
        left.set(yscale="log", xlabel="step", ylabel="cross-entropy", title="Training loss and final test loss")
        left.legend(fontsize=7, loc="lower left")
        x = range(len(ARMS))
        for offset, key, name in ((-0.2, "train_accuracy", "train"), (0.2, "test_accuracy", "test")):
            ests = [estimate(m[key][arm]) for arm in ARMS]
            right.bar([i + offset for i in x], [e.mean for e in ests], 0.4, yerr=[e.half_width for e in ests],
                      capsize=3, label=name)
        right.set(xticks=list(x), xticklabels=list(ARMS.values()), ylabel="accuracy",
                  ylim=(min(min(m["test_accuracy"][a]) for a in ARMS) - 0.05, 1.005), title="Train vs test accuracy")
        right.legend()
        fig.tight_layout()
        return fig
