"""The evidence behind a recommendation: a short bake-off of the top candidates on a validation split.

Each candidate is trained by the ordinary trainer (``archlab.train.train``, trees by their fit path)
with its sized settings and a fixed number of steps (``EVIDENCE_STEPS`` at most, the same for every
candidate of a kind), then scored on validation data the test split never replaces:

    every task's validation split (the trainer's ``val_metrics``), carved from the training data:
    rows / images / examples held out of training, a series' windows before the test months, the
    text before the test tail. The test split is scored once at the end, as in every run, and unused.

Trees get no early stopping here -- the validation rows are the evidence -- and a fixed number of
rounds like the networks' fixed steps. The winner is the best on the kind's metric; the evidence
agrees when that is the rule's pick, or when the rule's pick ties with the best (other ties are
broken by the loss). The table is printed with the matrix of
``archlab compare`` (``compare_table``: the one place this module touches the bake-off's code).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from archlab.choose.profile import Profile
from archlab.choose.rules import Candidate, Recommendation
from archlab.registry import model_info

TOP = 3  # candidates in the bake-off: the recommendation and two runner-ups
EVIDENCE_STEPS = {"images": 300, "series": 300, "tabular": 300, "text-pairs": 400, "text-labels": 300, "text": 300}
# task -> (settings of its evaluation, metric, higher is better, tie-breaking metric)
VALIDATION = {
    "classify": ({}, "accuracy", True, "loss"),
    "tabular": ({}, "accuracy", True, "log_loss"),
    "textclass": ({}, "accuracy", True, "loss"),
    "seq2seq": ({"val_words": 1000, "eval_words": 1000}, "wer", False, "loss"),
    "forecast": ({}, "loss", False, "loss"),
    "lm": ({}, "loss", False, "loss"),
}
ARCH_OF_FAMILY = {"cnn": "CNN", "vit": "Transformer", "mlp": "MLP", "rnn": "RNN", "lstm": "LSTM", "gru": "GRU",
                  "transformer": "Transformer", "boosting": "Boosting"}


@dataclass
class Trial:
    candidate: Candidate
    value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    error: str = ""


@dataclass
class Evidence:
    metric: str
    higher_is_better: bool
    trials: list[Trial]
    winner: Candidate | None
    agrees: bool
    seconds: float

    def as_json(self, rule_pick: Candidate) -> dict[str, Any]:
        return {
            "split": "validation", "metric": self.metric, "higher_is_better": self.higher_is_better,
            "results": [{"family": t.candidate.family, "model": t.candidate.model, "value": t.value,
                         "metrics": t.metrics, "params": t.params, "steps": t.steps,
                         "train_seconds": round(t.train_seconds, 2), **({"error": t.error} if t.error else {})}
                        for t in self.trials],
            "rule": rule_pick.as_json(), "winner": self.winner.as_json() if self.winner else None,
            "agrees": self.agrees, "seconds": round(self.seconds, 1),
        }


def metric_for(profile: Profile) -> tuple[dict[str, Any], str, bool, str]:
    settings, metric, higher, tie = VALIDATION[profile.task]
    if profile.task == "tabular" and profile.properties.get("objective") == "regression":
        return settings, "rmse", False, "mae"
    if profile.task == "seq2seq" and profile.data != "cmudict":
        return {}, "bleu", True, "loss"
    return settings, metric, higher, tie


def trial_settings(profile: Profile, c: Candidate, seed: int) -> dict[str, Any]:
    """The candidate's sized settings, cut to the evidence's fixed steps, scoring validation data."""
    extra, *_ = metric_for(profile)
    settings = {**c.settings, **extra, "seed": seed}
    steps = min(int(settings.get("max_steps", EVIDENCE_STEPS[profile.kind])), EVIDENCE_STEPS[profile.kind])
    settings.update(max_steps=steps, log_every=max(1, steps // 5))
    if "warmup_steps" in settings:
        settings["warmup_steps"] = min(int(settings["warmup_steps"]), steps // 10)
    if model_info(c.model).fitted:  # a step is a round; the validation rows are the evidence, not a stopping signal
        steps = min(int(settings.pop("num_rounds", steps)), EVIDENCE_STEPS[profile.kind])
        settings.update(max_steps=steps, early_stopping_rounds=0, log_every=max(1, steps // 5))
    return settings


def bake_off(profile: Profile, rec: Recommendation, out: Path, *, seed: int = 0, device: str = "auto",
             log: Callable[[str], None] = print) -> Evidence:
    """Train the top candidates with fixed steps and score them on validation data."""
    from archlab.checkpoint import from_pretrained
    from archlab.train import RunSpec, train

    _, metric, higher, tie = metric_for(profile)
    trials, start = [], time.perf_counter()
    chosen = rec.candidates[:TOP]
    for i, c in enumerate(chosen, 1):
        settings = trial_settings(profile, c, seed)
        settings["device"] = device
        log(f"evidence {i}/{len(chosen)}: {c.model} ({c.family}), {settings['max_steps']} "
            f"{'rounds' if model_info(c.model).fitted else 'steps'}")
        trial = Trial(c)
        run_dir = Path(out) / f"{i}-{c.model}-{c.family}"
        try:
            result = train(RunSpec(task=profile.task, model=c.model, data=profile.data, out=run_dir,
                                   settings=settings, overwrite=True))
        except Exception as e:  # noqa: BLE001 -- one candidate that fails must not hide the others
            trial.error = f"{type(e).__name__}: {e}"
            log(f"  {c.model} failed: {trial.error}")
        else:
            model = from_pretrained(run_dir)
            trial.metrics = {k: float(v) for k, v in result["val_metrics"].items()}
            trial.value = trial.metrics.get(metric)
            trial.params = model.num_parameters()  # trees count their split thresholds and leaf values
            trial.steps, trial.train_seconds = int(result["step"]), float(result["train_seconds"])
        trials.append(trial)
    winner = pick_winner(trials, rec.recommended, higher, tie)
    return Evidence(metric, higher, trials, winner, winner is rec.recommended, time.perf_counter() - start)


def pick_winner(trials: list[Trial], rule_pick: Candidate, higher: bool, tie: str) -> Candidate | None:
    """The best finished trial on the metric; the rule's pick keeps a tie (the evidence overturns the
    rule only when another candidate is strictly better); other ties go to the lower ``tie`` metric."""
    done = [t for t in trials if t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    sign = -1 if higher else 1
    best = min(done, key=lambda t: (sign * t.value, t.metrics.get(tie, 0.0)))
    pick = next((t for t in done if t.candidate is rule_pick), None)
    return pick.candidate if pick is not None and pick.value == best.value else best.candidate


def compare_table(profile: Profile, evidence: Evidence, seed: int = 0) -> str:
    """The evidence as ``archlab compare`` prints a row (its matrix: metric, parameters, steps, seconds)."""
    from archlab.compare import Cell, CellResult, CompareResult, Row, RowResult, SeedRun, matrix_text

    cells, results = [], []
    for t in evidence.trials:
        arch = ARCH_OF_FAMILY[t.candidate.family]
        cells.append(Cell(arch, t.candidate.model, t.candidate.settings, t.steps))
        run = SeedRun(seed, status="failed" if t.error else "ok", value=t.value, metrics=t.metrics, steps=t.steps,
                      train_seconds=t.train_seconds, params=t.params, error=t.error)
        results.append(CellResult(profile.kind, arch, t.candidate.model, runs=[run]))
    row = Row(profile.kind, profile.kind, f"{Path(profile.data).name} (validation)", profile.task, evidence.metric,
              evidence.higher_is_better, tuple(cells))
    table = CompareResult([RowResult(row, results)], "fixed", "evidence", [seed], "", "", 1, 1,
                          0.0, wall_seconds=evidence.seconds)
    text = matrix_text(table)
    # compare's footer speaks of seeds and its plan; here every candidate had one seed and fixed steps.
    text = text.rsplit("\n", 3)[0]
    best = f"{evidence.winner.model} is best on the validation split" if evidence.winner else "no candidate finished"
    return f"{text}\n{best} · {evidence.seconds:.0f} s in all"
