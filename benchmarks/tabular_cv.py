"""5-fold cross-validation of the tabular row: gradient-boosted trees vs the MLP vs the FT-Transformer.

Every fold is an ordinary ``archlab train --task tabular --set folds=5 --set fold=F`` run: the same
folds for every model (``split_seed=0``, stratified by class), encoding fitted on the fold's
training rows. The networks train a fixed number of epochs; the trees stop early on the fold's
validation rows (10% of all rows, carved from the training folds and unused by the networks). A
linear model (logistic or least-squares regression, scikit-learn) on the same encoded rows is
printed as a reference. For each data set and model it prints the mean over the folds and the 95%
interval of that mean, mean +- t_{0.975, k-1} s / sqrt(k), then the table as markdown.

    python benchmarks/tabular_cv.py                      # breast_cancer, wine, diabetes; 5 folds
    python benchmarks/tabular_cv.py --data wine --folds 5 --threads 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

RECIPES = {
    "lightgbm": {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 10},
    "tabular_mlp": {"hidden": "128,64", "dropout": 0.1, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-4,
                    "epochs": 60, "warmup_steps": 20, "log_every": 1000},
    "ft_transformer": {"d_token": 32, "num_layers": 2, "num_heads": 4, "dropout": 0.1, "batch_size": 32, "lr": 1e-3,
                       "weight_decay": 1e-4, "epochs": 60, "warmup_steps": 20, "log_every": 1000},
}
LABELS = {"lightgbm": "Boosting (LightGBM)", "tabular_mlp": "MLP", "ft_transformer": "FT-Transformer",
          "linear": "linear (reference)"}


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval."""
    from scipy import stats

    k = len(values)
    mean = statistics.fmean(values)
    half = stats.t.ppf(0.975, k - 1) * statistics.stdev(values) / math.sqrt(k) if k > 1 else float("nan")
    return mean, half


def linear_fold(data: str, folds: int, fold: int) -> dict[str, float]:
    """Logistic / least-squares regression on the fold's encoded rows, scored like the task scores."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from archlab.tasks.tabular import TabularConfig, TabularTask

    task = TabularTask(TabularConfig(folds=folds, fold=fold), data)
    (xn, xc, y), (tn, tc, ty) = task.arrays("train"), task.arrays("test")
    onehot = lambda c: np.concatenate([np.eye(k)[c[:, j]] for j, k in enumerate(task.encoder.cardinalities)], 1) \
        if c.shape[1] else np.zeros((len(c), 0))  # noqa: E731
    x, t = np.concatenate([xn, onehot(xc)], 1), np.concatenate([tn, onehot(tc)], 1)
    if task.classification:
        p = LogisticRegression(max_iter=5000).fit(x, y).predict_proba(t)
        return {"accuracy": float(np.mean(p.argmax(1) == ty)),
                "log_loss": float(-np.mean(np.log(np.clip(p[np.arange(len(ty)), ty], 1e-15, 1))))}
    sigma, mu = task.encoder.target_std, task.encoder.target_mean
    e = sigma * (LinearRegression().fit(x, y).predict(t) - ty)
    y_data = mu + sigma * ty
    return {"rmse": float(np.sqrt(np.mean(e ** 2))), "r2": float(1 - np.sum(e ** 2) / np.sum((y_data - y_data.mean()) ** 2))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", help="breast_cancer, wine, diabetes (default: all three)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--models", default="lightgbm,tabular_mlp,ft_transformer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from archlab.train import RunSpec, train

    torch.set_num_threads(args.threads)
    datasets = args.data or ["breast_cancer", "wine", "diabetes"]
    models = args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="archlab-cv-") as tmp:
        for data in datasets:
            scores: dict[str, list[dict[str, float]]] = {m: [] for m in [*models, "linear"]}
            seconds: dict[str, float] = {m: 0.0 for m in models}
            for fold in range(args.folds):
                for model in models:
                    start = time.perf_counter()
                    settings = {**RECIPES[model], "folds": args.folds, "fold": fold, "split_seed": 0, "seed": args.seed}
                    result = train(RunSpec(task="tabular", model=model, data=data, out=Path(tmp) / f"{data}-{model}-{fold}",
                                           settings=settings))
                    seconds[model] += time.perf_counter() - start
                    scores[model].append(result["metrics"])
                scores["linear"].append(linear_fold(data, args.folds, fold))
                print(f"{data} fold {fold}: " + ", ".join(
                    f"{m} {next(iter(scores[m][-1].items()))[1]:.4f}" for m in scores), flush=True)
            for model, folds in scores.items():
                names = ("accuracy", "log_loss") if "accuracy" in folds[0] else ("rmse", "r2")
                cells = []
                for name in names:
                    mean, half = interval([f[name] for f in folds])
                    cells.append(f"{100 * mean:.1f} ± {100 * half:.1f}%" if name == "accuracy" else f"{mean:.3f} ± {half:.3f}")
                rows.append((data, LABELS[model], names, cells, seconds.get(model)))
    print("\n| data | model | metric 1 (mean ± 95% CI) | metric 2 (mean ± 95% CI) | seconds (all folds) |")
    print("|---|---|---|---|---|")
    for data, label, names, cells, secs in rows:
        print(f"| {data} | {label} | {names[0]} {cells[0]} | {names[1]} {cells[1]} | "
              f"{'' if secs is None else f'{secs:.0f}'} |")


if __name__ == "__main__":
    main()
