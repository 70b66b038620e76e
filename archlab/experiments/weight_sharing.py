"""weight_sharing: a convolution needs far fewer parameters than a dense layer, and tolerates shifts.

Parameters, exactly. A convolution with C_out filters of size k x k over C_in channels has
``C_out (C_in k^2 + 1)`` parameters, whatever the image size: the same filter is used at every
position. A dense layer that computes the same outputs -- C_out maps of H' x W' -- from the same
C_in x H x W input needs a weight for every input-output pair: ``(C_in H W + 1) C_out H' W'``.
Both formulas are checked against the parameters of the library's own layers (``archlab.nn.Conv2d``
and a dense ``torch.nn.Linear``) for LeNet-5's two convolutions on a 28 x 28 digit, and for the
whole LeNet-5 and MLP trained below.

Translation. LeNet-5 (ReLU, max pooling) and an MLP (784-256-128-10) are trained by the trainer
on MNIST-5k for the same number of steps, without shift augmentation. Each is then evaluated on
the 1,000 test digits moved by s = 0..4 pixels up, down, left and right (``eval_shift``: zeros
come in, the digit keeps its shape) and the four directions' accuracies are averaged. "Kept" is
the accuracy at a shift over the accuracy unshifted.
"""

from __future__ import annotations

from typing import Any

import torch

from archlab.experiments.core import NO_VALIDATION, Check, Column, Experiment, Lab, estimate, register_experiment

DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # down, up, right, left
MODELS = {"cnn": ("lenet5", {"input_size": 28, "activation": "relu", "pooling": "max"}),
          "mlp": ("mlp", {"hidden": (256, 128), "dropout": 0.0})}
LABELS = {"cnn": "CNN (LeNet-5)", "mlp": "MLP (784-256-128-10)"}


def layer_counts() -> list[dict[str, Any]]:
    """LeNet-5's convolutions on a 28 x 28 digit against dense layers with the same outputs: the
    formula and the count of the library's layers' parameters, for both."""
    from torch import nn

    from archlab.nn import Conv2d
    from archlab.utils.runtime import count_parameters

    rows = []
    # (name, C_in, H, W, C_out, k, padding): C1 (padded by 2, as LeNet-5 pads 28x28 digits) and C3
    for name, c_in, h, w, c_out, k, pad in (("C1: 6 filters 5x5 on 1x28x28", 1, 28, 28, 6, 5, 2),
                                            ("C3: 16 filters 5x5 on 6x14x14", 6, 14, 14, 16, 5, 0)):
        h_out, w_out = h + 2 * pad - k + 1, w + 2 * pad - k + 1
        with torch.device("meta"):  # shapes only: no memory for the dense layer's millions of weights
            conv = Conv2d(c_in, c_out, k, padding=pad)
            dense = nn.Linear(c_in * h * w, c_out * h_out * w_out)
        rows.append({"layer": name, "outputs": c_out * h_out * w_out,
                     "conv_formula": c_out * (c_in * k * k + 1), "conv_counted": count_parameters(conv),
                     "dense_formula": (c_in * h * w + 1) * c_out * h_out * w_out,
                     "dense_counted": count_parameters(dense)})
    return rows


@register_experiment
class WeightSharing(Experiment):
    name = "weight_sharing"
    title = "Weight sharing: parameters and translation tolerance of a CNN vs a dense network"
    claim = ("A convolution shares one filter across the image, so it needs far fewer parameters than a dense "
             "layer, and it tolerates a shifted input.")
    texts = ("001", "002", "003")
    source = ("Seed 003: \"Parameter sharing: Same filter used across entire image, drastically reducing parameters\"; "
              "\"Translation invariance: Can detect features regardless of position in image\". Seed 001: \"Weight "
              "Sharing: Same filter weights applied across the image\", CNNs are \"Robust to small transformations\". "
              "Seed 002: max pooling makes the representation \"approximately invariant to small translations\".")
    reference = ("LeCun et al. 1998: LeNet-5 has 340,908 connections but only about 60,000 trainable parameters, "
                 "because of weight sharing; local receptive fields, shared weights and sub-sampling \"ensure some "
                 "degree of shift, scale, and distortion invariance\".")
    criterion = ("Each convolution has < 1% of the parameters of the dense layer computing the same outputs (formulas "
                 "equal to the counted parameters), and at a {max_shift}-pixel shift the CNN keeps a larger share of "
                 "its unshifted accuracy than the MLP.")
    seconds = (15.0, 30.0)

    def protocol(self, size: str) -> dict[str, Any]:
        p = {"data": "mnist5k", "batch_size": 64, "lr": 2e-3, "shifts": [0, 1, 2, 3, 4], "max_shift": 4}
        if size == "full":
            p.update(steps=1500)
        elif size == "quick":
            p.update(steps=250)
        else:
            p.update(steps=5, batch_size=16, shifts=[0, 2], max_shift=2)
        return p

    def measure(self, lab: Lab, p: dict[str, Any]) -> dict[str, Any]:
        lab.expect(len(MODELS) * len(lab.seeds))
        accuracy = {arm: [[0.0] * len(lab.seeds) for _ in p["shifts"]] for arm in MODELS}
        params = {}
        for si, seed in enumerate(lab.seeds):
            for arm, (model, settings) in MODELS.items():
                trainer = {"max_steps": p["steps"], "batch_size": p["batch_size"], "lr": p["lr"],
                           "warmup_steps": p["steps"] // 20, "log_every": max(1, p["steps"] // 10)}
                run = lab.train(f"{arm}-seed{seed}", task="classify", model=model, data=p["data"], trainer=trainer,
                                task_settings=NO_VALIDATION, model_settings=settings, seed=seed)
                params[arm] = sum(t.numel() for t in run.load_model().parameters())
                for k, s in enumerate(p["shifts"]):
                    moves = [(0, 0)] if s == 0 else [(s * dy, s * dx) for dy, dx in DIRECTIONS]
                    accs = [lab.evaluate(run, eval_shift=move)["accuracy"] for move in moves]
                    accuracy[arm][k][si] = sum(accs) / len(accs)
        return {"shifts": p["shifts"], "accuracy": accuracy, "model_params": params, "layers": layer_counts()}

    def _kept(self, m, arm, shift):
        acc = m["accuracy"][arm]
        at, base = acc[m["shifts"].index(shift)], acc[0]
        return estimate(a / b if b > 0 else 0.0 for a, b in zip(at, base))

    def judge(self, m, p) -> list[Check]:
        checks = []
        for row in m["layers"]:
            exact = row["conv_formula"] == row["conv_counted"] and row["dense_formula"] == row["dense_counted"]
            share = row["conv_counted"] / row["dense_counted"] if exact else float("inf")
            checks.append(Check(f"{row['layer'].split(':')[0]} parameters as a share of the dense layer's "
                                f"(formula = count: {'yes' if exact else 'NO'})", estimate([share]), "<", 0.01, "%"))
        s = p["max_shift"]
        checks.append(Check(f"accuracy kept at a {s}-pixel shift, CNN minus MLP",
                            self._kept(m, "cnn", s) - self._kept(m, "mlp", s), ">", 0.0, "%"))
        return checks

    def table(self, m, p):
        columns = [Column("model", "model"), Column("params", "parameters", "int")]
        columns += [Column(f"shift_{s}", f"{s} px", "%") for s in m["shifts"]]
        columns.append(Column("kept", f"kept at {p['max_shift']} px", "%"))
        rows = []
        for arm in MODELS:
            row: dict[str, Any] = {"model": LABELS[arm], "params": m["model_params"][arm]}
            for k, s in enumerate(m["shifts"]):
                row[f"shift_{s}"] = estimate(m["accuracy"][arm][k])
            row["kept"] = self._kept(m, arm, p["max_shift"])
            rows.append(row)
        return columns, rows

    def notes(self, m, p) -> list[str]:
        out = []
        for row in m["layers"]:
            out.append(f"{row['layer']} -> {row['outputs']:,} outputs: convolution {row['conv_counted']:,} parameters "
                       f"(C_out (C_in k^2 + 1) = {row['conv_formula']:,}); dense layer {row['dense_counted']:,} "
                       f"((C_in H W + 1) C_out H' W' = {row['dense_formula']:,}), "
                       f"{row['dense_counted'] / row['conv_counted']:,.0f} times more")
        out.append(f"accuracy on the test digits moved by s pixels, mean of up/down/left/right; {p['steps']} training "
                   f"steps of {p['batch_size']} on {p['data']}, no shift augmentation")
        return out

    def plot(self, m, p, plt):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.3]})
        names = [r["layer"].split(":")[0] for r in m["layers"]]
        x = range(len(names))
        left.bar([i - 0.2 for i in x], [r["conv_counted"] for r in m["layers"]], 0.4, label="convolution")
        left.bar([i + 0.2 for i in x], [r["dense_counted"] for r in m["layers"]], 0.4, label="dense, same outputs")
        left.set(yscale="log", xticks=list(x), xticklabels=names, ylabel="parameters", ylim=(10, 1e9),
                 title="One layer of LeNet-5 on a 28x28 digit")
        left.legend(loc="upper left", ncols=2)
        for arm in MODELS:
            ests = [estimate(v) for v in m["accuracy"][arm]]
            right.errorbar(m["shifts"], [e.mean for e in ests], yerr=[e.half_width for e in ests], marker="o",
                           capsize=3, label=f"{LABELS[arm]}, {m['model_params'][arm]:,} parameters")
        right.set(xlabel="shift of the test digits (pixels)", ylabel="test accuracy", ylim=(0, 1.02),
                  title="Trained without shifts, tested shifted")
        right.legend()
        fig.tight_layout()
        return fig
