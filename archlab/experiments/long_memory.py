"""long_memory: a simple RNN forgets across long gaps; the LSTM and the GRU keep the information.

Protocol: the ``recall`` task (``archlab.tasks.recall``): a symbol, one of 4, then G random
distractors; name the symbol at the end. A ``rnn_classifier`` reads the sequence and classifies
its final state h_T, so the symbol must survive G steps of recurrence. For every gap G and cell
(simple tanh RNN, LSTM, GRU) the trainer runs the same number of AdamW steps on fresh sequences,
and the test accuracy on 1,000 fixed sequences is recorded.

The LSTM and the GRU start remembering (``memory_bias`` b = ln G_max, the upper end of Tallec &
Ollivier's "chrono" initialisation: forget gate at sigma(b) = G_max / (G_max + 1), a memory of
about G_max steps, input gate nearly closed; the GRU's update gate the same) as Hochreiter &
Schmidhuber's 1997 LSTM did, whose cell never forgot and whose input gates started closed. The full protocol also trains the LSTM with torch's
initialisation (forget and input gates near 0.5 at the start) to show what that choice is worth,
and gives the simple RNN the best of two learning rates at every gap, so that its failure is
not a learning rate's; the quick protocol trains every cell at one learning rate.

Then the vanishing gradient itself: on a test batch at the longest gap, ||dL/dh_t|| for every
step t (``archlab.nn.record_steps`` / ``hidden_grad_norms`` on the reference path), at
initialisation and after training. The table's "gradient kept" is ||dL/dh_1|| / ||dL/dh_T||: how
much of the loss's gradient still reaches the step that holds the symbol.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from archlab.experiments.core import Check, Column, Experiment, Lab, estimate, register_experiment

CELL_LABELS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "lstm_torch_init": "LSTM, torch init"}


@register_experiment
class LongMemory(Experiment):
    name = "long_memory"
    title = "Long memory: simple RNN vs LSTM and GRU across growing gaps"
    claim = ("A simple RNN forgets information across long gaps, because its gradients vanish through time; "
             "the LSTM's and the GRU's gates keep it.")
    texts = ("000", "001", "002", "003")
    source = ("Seed 003: \"Basic RNNs struggle with long sequences due to vanishing gradients during backpropagation "
              "through time (BPTT). Gradients exponentially decay as they propagate backwards\" and the LSTM's cell "
              "state \"acts as a 'highway' that allows gradients to flow backwards without vanishing, enabling the "
              "network to learn dependencies spanning hundreds of time steps.\" Seed 000: a basic RNN \"forgets "
              "'The cat' by the time it gets to 'was hungry'\"; seeds 001 and 002: the LSTM \"addresses vanishing "
              "gradients\".")
    reference = ("Hochreiter & Schmidhuber 1997, Experiment 2 (a symbol to be remembered over a lag of p = 100 "
                 "steps, with and without noise): RNNs trained by BPTT or RTRL fail, the LSTM learns it; Bengio, "
                 "Simard & Frasconi 1994: gradient descent's success on the latching problem falls quickly as the "
                 "span to bridge grows.")
    criterion = ("At the longest gap (G = {longest}) the LSTM and the GRU reach >= 90% test accuracy and the simple "
                 "RNN stays below chance + 10 points (35%); at the shortest gap (G = {shortest}) the simple RNN "
                 "reaches >= 90%, so its failure is the gap's, not the task's.")
    seconds = (15.0, 200.0)

    def protocol(self, size: str) -> dict[str, Any]:
        p = {"num_symbols": 4, "num_distractors": 4, "embed_dim": 16, "batch_size": 32, "lr": 3e-3, "hidden_size": 32}
        if size == "full":
            p.update(gaps=[10, 50, 100, 200, 400], steps=500, rnn_lrs=[3e-3, 1e-2], torch_init_arm=True)
        elif size == "quick":
            p.update(gaps=[5, 50], steps=200, rnn_lrs=[3e-3], torch_init_arm=False)
        else:  # tiny: the tests
            p.update(gaps=[2, 8], steps=6, hidden_size=8, embed_dim=4, batch_size=8, rnn_lrs=[1e-2],
                     torch_init_arm=False)
        p["shortest"], p["longest"] = min(p["gaps"]), max(p["gaps"])
        # Chrono initialisation's upper end: sigma(b) = G / (G + 1), a memory of about G + 1 steps at the start.
        p["memory_bias"] = round(math.log(p["longest"]), 3)
        return p

    def arms(self, p: dict[str, Any]) -> list[str]:
        return ["rnn", "lstm", "gru"] + (["lstm_torch_init"] if p["torch_init_arm"] else [])

    def measure(self, lab: Lab, p: dict[str, Any]) -> dict[str, Any]:
        arms, gaps = self.arms(p), p["gaps"]
        runs_per_seed = len(gaps) * (len(p["rnn_lrs"]) + len(arms) - 1)
        lab.expect(runs_per_seed * len(lab.seeds))
        accuracy = {a: [[0.0] * len(lab.seeds) for _ in gaps] for a in arms}
        rnn_lr = {g: [0.0] * len(lab.seeds) for g in gaps}
        grad_init = {a: [] for a in arms}
        grad_trained = {a: [] for a in arms}
        for si, seed in enumerate(lab.seeds):
            for gi, gap in enumerate(gaps):
                for arm in arms:
                    cell = "lstm" if arm == "lstm_torch_init" else arm
                    model = {"cell": cell, "hidden_size": p["hidden_size"], "embed_dim": p["embed_dim"]}
                    if arm in ("lstm", "gru"):
                        model["memory_bias"] = p["memory_bias"]
                    recall = {"gap": gap, "num_symbols": p["num_symbols"], "num_distractors": p["num_distractors"],
                              "val_size": 0}  # no model selection: no validation set to draw
                    lrs = p["rnn_lrs"] if arm == "rnn" else [p["lr"]]
                    best = None
                    for lr in lrs:
                        trainer = {"batch_size": p["batch_size"], "max_steps": p["steps"], "lr": lr,
                                   "weight_decay": 0.0, "warmup_steps": max(1, p["steps"] // 20),
                                   "log_every": max(1, p["steps"] // 10)}
                        label = f"{arm}-gap{gap}" + (f"-lr{lr:g}" if len(lrs) > 1 else "") + f"-seed{seed}"
                        run = lab.train(label, task="recall", model="rnn_classifier", trainer=trainer,
                                        task_settings=recall, model_settings=model, seed=seed)
                        if best is None or run.metrics["accuracy"] > best[0].metrics["accuracy"]:
                            best = (run, lr)
                    run, lr = best
                    accuracy[arm][gi][si] = run.metrics["accuracy"]
                    if arm == "rnn":
                        rnn_lr[gap][si] = lr
                    if gap == p["longest"]:
                        trained = run.load_model()
                        grad_trained[arm].append(hidden_gradients(trained, gap, p))
                        torch.manual_seed(seed)
                        grad_init[arm].append(hidden_gradients(type(trained)(trained.config), gap, p))
        return {"gaps": gaps, "arms": arms, "accuracy": accuracy, "rnn_best_lr": {str(g): v for g, v in rnn_lr.items()},
                "grad_norm_init": grad_init, "grad_norm_trained": grad_trained, "chance": 1 / p["num_symbols"]}

    @staticmethod
    def _acc(m, arm, gap):
        return estimate(m["accuracy"][arm][m["gaps"].index(gap)])

    @staticmethod
    def _kept(curves: list[list[float]]):
        """||dL/dh_1|| / ||dL/dh_T|| per seed (h_1: the state right after the symbol)."""
        return estimate(c[0] / c[-1] if c[-1] > 0 else 0.0 for c in curves)

    def judge(self, m, p) -> list[Check]:
        longest, shortest, chance = p["longest"], p["shortest"], m["chance"]
        return [
            Check(f"LSTM accuracy at gap {longest}", self._acc(m, "lstm", longest), ">=", 0.9, "%"),
            Check(f"GRU accuracy at gap {longest}", self._acc(m, "gru", longest), ">=", 0.9, "%"),
            Check(f"RNN accuracy at gap {longest}", self._acc(m, "rnn", longest), "<", chance + 0.1, "%"),
            Check(f"RNN accuracy at gap {shortest}", self._acc(m, "rnn", shortest), ">=", 0.9, "%"),
        ]

    def table(self, m, p):
        columns = [Column("cell", "cell")] + [Column(f"gap_{g}", f"gap {g}", "%") for g in m["gaps"]]
        columns.append(Column("gradient_kept", f"gradient kept at gap {p['longest']}", "{:.2e}"))
        rows = []
        for arm in m["arms"]:
            row: dict[str, Any] = {"cell": CELL_LABELS[arm]}
            for g in m["gaps"]:
                row[f"gap_{g}"] = self._acc(m, arm, g)
            row["gradient_kept"] = self._kept(m["grad_norm_trained"][arm])
            rows.append(row)
        rows.append({"cell": "chance", **{f"gap_{g}": m["chance"] for g in m["gaps"]}})
        return columns, rows

    def notes(self, m, p) -> list[str]:
        out = [f"test accuracy on 1,000 fixed sequences after {p['steps']} training steps of {p['batch_size']} "
               f"fresh sequences (hidden {p['hidden_size']}, AdamW lr {p['lr']:g} for the gated cells); LSTM and GRU "
               f"with memory_bias = ln {p['longest']} = {p['memory_bias']:g}"]
        if len(p["rnn_lrs"]) > 1:
            chosen = ", ".join(f"gap {g}: {'/'.join(f'{v:g}' for v in lrs)}" for g, lrs in m["rnn_best_lr"].items())
            out.append(f"the RNN's best learning rate of {p['rnn_lrs']} per gap (per seed): {chosen}")
        return out

    def plot(self, m, p, plt):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        styles = {"rnn": ("o", "-"), "lstm": ("s", "--"), "gru": ("^", ":"), "lstm_torch_init": ("x", "-.")}
        for arm in m["arms"]:  # distinct markers and lines: arms that both reach 100% would hide each other
            means = [self._acc(m, arm, g) for g in m["gaps"]]
            marker, line = styles[arm]
            left.errorbar(m["gaps"], [e.mean for e in means], yerr=[e.half_width for e in means], marker=marker,
                          linestyle=line, capsize=3, label=CELL_LABELS[arm])
        left.axhline(m["chance"], color="grey", linestyle=":", label="chance")
        left.set(xscale="log", xlabel="gap G (steps between the symbol and the answer)", ylabel="test accuracy",
                 title="Recall the first symbol", ylim=(0, 1.05))
        left.legend()
        for i, arm in enumerate(m["arms"]):
            colour = f"C{i}"
            for key, style, when in (("grad_norm_trained", "-", "trained"), ("grad_norm_init", "--", "at init")):
                curves = torch.tensor(m[key][arm])              # (seeds, G + 1)
                right.plot(range(curves.shape[1]), curves.mean(0).clamp_min(1e-30).tolist(), style, color=colour,
                           label=f"{CELL_LABELS[arm]} ({when})")
        right.set(yscale="log", xlabel="step t", ylabel="||dL/dh_t|| (1e-30: underflow to 0)",
                  title=f"Gradient reaching each step (gap {p['longest']})")
        right.legend(fontsize=7)
        fig.tight_layout()
        return fig


def hidden_gradients(model, gap: int, p: dict[str, Any], n: int = 256) -> list[float]:
    """||dL/dh_t|| for t = 0..G on the first ``n`` test sequences of the recall task at ``gap``
    (the loss the task trains on, recorded on the reference path of the recurrent layer)."""
    from archlab.nn import hidden_grad_norms, record_steps
    from archlab.tasks import get_task

    task_cls = get_task("recall")
    task = task_cls(task_cls.Config(gap=gap, num_symbols=p["num_symbols"], num_distractors=p["num_distractors"]))
    batch = next(iter(task.eval_batches(n)))
    model.eval()
    with record_steps(model) as steps:
        loss = task.step(model, batch)
    first_layer = sorted((s for s in steps if s.layer == 0 and s.direction == 0), key=lambda s: s.t)
    return hidden_grad_norms(loss, first_layer, retain_graph=False).tolist()
