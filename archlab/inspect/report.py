"""One training run on one page: ``archlab report RUN_DIR`` writes ``RUN_DIR/report.html``.

The page is self-contained (figures inlined as PNG data) and holds

    the run       task, model, data, parameters, steps, and whether it is finished
    curves        training loss and the validation loss against the step; the task's headline
                  validation metric (accuracy, WER, RMSE, perplexity ...) against the step
    metrics       the final validation and test metrics, each in its one format
    pictures      what the task's predictions look like, from the saved model:
                    classify, textclass   confusion matrix on the test split (and misclassified images)
                    forecast              the forecast of the held-out test part beside naive baselines
                    lm                    continuations of prompts taken from the test text
                    seq2seq               translations of test examples, G2P phonemes that differ marked
    settings      every trainer, task and model setting the run used (``run.json``)

Everything comes from the run directory (``run.json``, ``metrics.jsonl``, the final model and the
files saved beside it); a run still in progress, or whose data is gone, gets a page without the
pictures that need the model, saying why.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import torch

from archlab.errors import ConfigError, check
from archlab.inspect import pictures
from archlab.utils.formatting import format_count, format_metric
from archlab.utils.io import write_text_atomic

RUN_FILE, METRICS_FILE, TASK_FILE = "run.json", "metrics.jsonl", "task.json"
N_EXAMPLES = 10


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The run's description and its logged records: ``{"run", "train", "val", "test", "selected"}``
    ("selected": the validation metrics of the weights the run kept, and their step)."""
    path = Path(run_dir)
    check(path.is_dir(), f"RUN_DIR {str(path)!r} is not a directory")
    check((path / RUN_FILE).is_file(), f"{str(path)!r} holds no {RUN_FILE}: it is not a run directory of "
                                       "`archlab train` (or `archlab compare`'s cells/ROW-ARCH-sSEED)")
    try:
        run = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path / RUN_FILE} is not valid JSON ({e})") from None
    records: dict[str, list[dict]] = {"train": [], "val": [], "test": [], "selected": []}
    if (path / METRICS_FILE).is_file():
        for line in (path / METRICS_FILE).read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if rec.get("split") in records:
                records[rec["split"]].append(rec)
    return {"run": run, **records}


def headline_metric(task_name: str, records: list[dict]) -> str | None:
    """The task's main metric among those logged (the first of its metrics that is not the loss)."""
    from archlab.tasks import get_task

    try:
        modes = get_task(task_name).metric_modes
    except ConfigError:
        modes = {}
    logged = [k for r in records for k in r]
    for name in modes:
        if name != "loss" and name in logged:
            return name
    return None


def _metrics_of(record: dict) -> dict[str, float]:
    return {k: v for k, v in record.items() if k not in ("step", "split", "time") and isinstance(v, (int, float))}


def curves_png(data: dict[str, Any], metric: str | None) -> bytes | None:
    train, val = data["train"], data["val"]
    if not train and not val:
        return None
    kept = data.get("selected") and data["selected"][-1].get("selected_step")
    plt = pictures.pyplot()
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(8.6 if metric else 5.0, 3.2), squeeze=False)
    left = axes[0][0]
    if train:
        left.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="training loss")
    with_loss = [r for r in val if "loss" in r]
    if with_loss:
        left.plot([r["step"] for r in with_loss], [r["loss"] for r in with_loss], marker="o", ms=3, lw=1.2,
                  label="validation loss")
    values = [r["loss"] for r in train] + [r["loss"] for r in with_loss]
    if values and min(values) > 0:
        left.set_yscale("log")
    left.set(xlabel="step", ylabel="loss", title="loss")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    if metric:
        right = axes[0][1]
        points = [(r["step"], r[metric]) for r in val if metric in r]
        scale = 100 if format_metric(metric, 0.5).endswith("%") else 1
        right.plot([p[0] for p in points], [scale * p[1] for p in points], marker="o", ms=3, color="C1")
        right.set(xlabel="step", ylabel=metric + (" (%)" if scale == 100 else ""), title=f"validation {metric}")
        right.grid(alpha=0.3)
    if kept:  # the step whose weights the run kept, chosen on the validation split
        for ax in axes[0]:
            ax.axvline(kept, color="0.4", ls="--", lw=1, label=f"kept weights (step {kept:,})")
        left.legend(fontsize=8)
    fig.tight_layout()
    return pictures.png(fig)


# --------------------------------------------------------------------------------------------
# The task's pictures, from the saved model


@torch.no_grad()
def _classify(task, model) -> list[str]:
    e = html.escape
    parts = []
    predicted, truth = [], []
    for batch in task.eval_batches(256, "test"):
        *inputs, y = batch
        logits = model(*inputs) if task.name == "classify" else model.token_logits(*inputs)
        predicted.append(logits.argmax(-1))
        truth.append(y)
    predicted, truth = torch.cat(predicted), torch.cat(truth)
    classes = [str(c) for c in task.classes]
    K = len(classes)
    confusion = torch.bincount(truth * K + predicted, minlength=K * K).view(K, K)  # (true, predicted)
    parts.append(f"<h2>Confusion matrix (test split, {len(truth):,} examples)</h2>")
    parts.append(pictures.img_html(pictures.confusion_png(confusion.tolist(), classes, "test split"), "confusion"))
    wrong = torch.nonzero(predicted != truth).flatten()
    if task.name == "classify" and len(wrong):
        shown = [{"true": int(truth[i]), "predicted": int(predicted[i]), "pixels": task.test_x[i].mean(0).tolist()}
                 for i in wrong[:N_EXAMPLES]]
        png = pictures.digits_png({"": shown}, classes)
        if png:
            parts.append(f"<h2>Misclassified test images ({len(wrong):,} of {len(truth):,})</h2>")
            parts.append(pictures.img_html(png, "misclassified"))
    elif task.name == "textclass" and len(wrong):
        ids, _ = task.splits["test"]
        rows = "".join(f"<tr><td>{e(task.tokenizer.decode(ids[i][1:]))}</td><td>{e(classes[int(truth[i])])}</td>"
                       f"<td class='bad'>{e(classes[int(predicted[i])])}</td></tr>" for i in wrong[:N_EXAMPLES])
        parts.append(f"<h2>Misclassified test texts ({len(wrong):,} of {len(truth):,})</h2><table><tr><th>text</th>"
                     f"<th>true</th><th>predicted</th></tr>{rows}</table>")
    return parts


def _forecast(task, model) -> list[str]:
    extra = pictures.series_context(task)
    _, _, predicted = task.forecast_test(model)
    baselines = {name.replace("_", " "): values for name, values in task.baseline_forecasts().items()}
    png = pictures.forecast_png(extra, {"model": predicted.tolist()}, baselines,
                                f"{task.series.name}: forecast of the held-out test part")
    return ["<h2>Forecast of the test part</h2>", pictures.img_html(png, "forecast")] if png else []


@torch.no_grad()
def _lm(task, model) -> list[str]:
    e = html.escape
    T = min(32, task.config.block_size // 2)
    tokens = task.test_tokens
    starts = [0, len(tokens) // 3, 2 * len(tokens) // 3][: max(1, len(tokens) // max(T, 1))]
    rows = []
    for i, start in enumerate(starts):
        prompt = tokens[start:start + T].view(1, -1)  # (1, T)
        greedy = model.generate(prompt, 120, do_sample=False)
        sampled = model.generate(prompt, 120, do_sample=True, temperature=0.8,
                                 generator=torch.Generator().manual_seed(i))
        decode = task.tokenizer.decode
        rows.append(f"<tr><td class='tokens'>{e(decode(prompt[0].tolist()))}</td>"
                    f"<td class='tokens'>{e(decode(greedy[0, T:].tolist()))}</td>"
                    f"<td class='tokens'>{e(decode(sampled[0, T:].tolist()))}</td></tr>")
    return ["<h2>Generations from prompts of the test text</h2>",
            "<table><tr><th>prompt</th><th>greedy</th><th>sampled (temperature 0.8)</th></tr>" + "".join(rows)
            + "</table>"]


def _seq2seq(task, model) -> list[str]:
    e = html.escape
    rows = []
    for source, predicted, refs in task.sample_predictions(model, N_EXAMPLES):
        if task.g2p:
            ref = pictures.closest(predicted.split(), [r.split() for r in refs])
            shown = pictures.marked_tokens(predicted.split(), ref) or "(nothing)"
        else:
            shown = e(predicted) if predicted in refs else f"<span class='bad'>{e(predicted)}</span>"
        rows.append(f"<tr><td>{e(source)}</td><td class='tokens'>{e(' / '.join(refs))}</td>"
                    f"<td class='tokens'>{shown}</td></tr>")
    what = "phonemes that differ from the closest reference in red, a missing one as _" if task.g2p else \
        "translations that differ from the reference in red"
    return [f"<h2>Test examples</h2><p class='meta'>{what}</p>",
            "<table><tr><th>source</th><th>reference</th><th>model</th></tr>" + "".join(rows) + "</table>"]


PICTURES = {"classify": _classify, "textclass": _classify, "forecast": _forecast, "lm": _lm, "seq2seq": _seq2seq}


def task_pictures(run_dir: Path) -> tuple[list[str], int | None]:
    """(HTML parts of the task's pictures, the model's parameter count); a note instead when they cannot
    be drawn."""
    from archlab.train import load_for_evaluation
    from archlab.utils.runtime import count_parameters

    if not (Path(run_dir) / TASK_FILE).is_file():
        return ["<p class='meta'>No final model yet (the run is in progress or was stopped): no predictions "
                "shown.</p>"], None
    try:
        model, task = load_for_evaluation(run_dir)
        model.eval()
        draw = PICTURES.get(task.name)
        return (draw(task, model) if draw else []), count_parameters(model)
    except Exception as e:  # noqa: BLE001 -- the curves and numbers are worth a page on their own
        return [f"<p class='warn'>Predictions not shown: {html.escape(type(e).__name__)}: "
                f"{html.escape(str(e))}</p>"], None


# --------------------------------------------------------------------------------------------
# The page


def _metrics_table(val: dict[str, float], test: dict[str, float]) -> str:
    e = html.escape
    names = list(dict.fromkeys([*val, *test]))
    rows = "".join(f"<tr><td>{e(n)}</td><td>{e(format_metric(n, val.get(n)))}</td>"
                   f"<td>{e(format_metric(n, test.get(n)))}</td></tr>" for n in names)
    return f"<table><tr><th>metric</th><th>validation</th><th>test</th></tr>{rows}</table>"


def _settings_table(run: dict[str, Any]) -> str:
    e = html.escape
    parts = []
    for group, title in (("trainer", "trainer"), ("task_config", "task"), ("model_overrides", "model (set by hand)")):
        values = run.get(group) or {}
        if values:
            rows = "".join(f"<tr><td>{e(str(k))}</td><td><code>{e(json.dumps(v))}</code></td></tr>"
                           for k, v in sorted(values.items()))
            parts.append(f"<table><tr><th colspan='2'>{e(title)}</th></tr>{rows}</table>")
    return "".join(parts)


def run_report(run_dir: str | Path) -> str:
    """The HTML page of the run in ``run_dir``."""
    e = html.escape
    path = Path(run_dir)
    data = read_run(path)
    run = data["run"]
    # The final validation metrics are those of the weights the test split scored: the kept ones.
    selected = data["selected"][-1] if data["selected"] else None
    last_val = selected or (data["val"][-1] if data["val"] else None)
    val = {k: v for k, v in _metrics_of(last_val).items() if k != "selected_step"} if last_val else {}
    test = _metrics_of(data["test"][-1]) if data["test"] else {}
    metric = headline_metric(run.get("task", ""), data["val"] + data["test"])
    steps = max([r["step"] for r in data["train"] + data["val"] + data["test"]], default=0)
    pics, params = task_pictures(path)
    finished = bool(data["test"]) and (path / TASK_FILE).is_file()
    title = f"{run.get('model', '?')} on {Path(str(run.get('data', '?'))).name} ({run.get('task', '?')})"
    body = [f"<h1>{e(title)}</h1>",
            f"<p>Run <code>{e(str(path.resolve()))}</code> · {steps:,} steps"
            + (f" · {format_count(params)} parameters" if params else "")
            + (" · finished" if finished else " · <b>not finished</b>: no test score yet") + "</p>"]
    if metric and metric in test:
        body.append(f"<p>Test {e(metric)}: <b>{e(format_metric(metric, test[metric]))}</b>"
                    + (f" (validation {e(format_metric(metric, val[metric]))})" if metric in val else "")
                    + (f", with the weights of step {selected['selected_step']:,}, the best validation "
                       f"{e(str(selected.get('select_metric', '')))}" if selected else "")
                    + "</p>")
    curves = curves_png(data, metric)
    if curves:
        body += ["<h2>Training and validation curves</h2>", pictures.img_html(curves, "curves")]
    if val or test:
        body += ["<h2>Final metrics</h2>", _metrics_table(val, test),
                 "<p class='meta'>The validation split is carved from the training data and scored during "
                 "training; the test split is scored once, at the end.</p>"]
    body += pics
    body += ["<h2>Settings</h2>", _settings_table(run)]
    return pictures.html_page(f"archlab report: {title}", body)


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the page of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``); returns its path."""
    page = run_report(run_dir)
    target = Path(out) if out else Path(run_dir) / "report.html"
    check(target.parent.is_dir(), f"--out {str(target)!r}: folder {str(target.parent)!r} does not exist")
    write_text_atomic(target, page)
    return target
