"""The bake-off's results as a terminal table, ``result.json``, ``report.md`` and a self-contained
``report.html`` (plots embedded as PNG data, no network needed to view it).

The matrix has one row per data set and one column per architecture; each cell gives the held-out
metric, the parameter count and the training seconds, the best of the row marked. Baselines stand
in their own columns. A run with a failed or missing cell says INCOMPLETE at the top of every output.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from archlab.compare.plan import ARCHS
from archlab.compare.results import CompareResult, RowResult
from archlab.utils.io import write_text_atomic

BASELINE_LABELS = {"majority_class": "majority class", "naive": "naive", "seasonal_naive": "seasonal naive"}


def _params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _value(v: float | None, metric: str) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{100 * v:.1f}%" if metric in ("accuracy", "wer", "per") else f"{v:.3f}"


def _archs(result: CompareResult) -> list[str]:
    used = {c.arch for r in result.rows for c in r.cells}
    return [a for a in ARCHS if a in used]


def _baseline_names(result: CompareResult) -> list[str]:
    names: list[str] = []
    for r in result.rows:
        names += [n for n in r.baselines if n not in names]
    return names


def _status_line(result: CompareResult) -> str:
    failed = [f"{c.row}/{c.arch}" for r in result.rows for c in r.cells if c.status == "failed"]
    pending = [f"{c.row}/{c.arch}" for r in result.rows for c in r.cells if c.status == "pending"]
    if result.complete:
        return ""
    parts = []
    if result.interrupted:
        parts.append("the run was interrupted")
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if pending:
        parts.append("not run: " + ", ".join(pending))
    return "INCOMPLETE: " + "; ".join(parts)


def _cell_lookup(row: RowResult) -> dict[str, object]:
    return {c.arch: c for c in row.cells}


# ---------------------------------------------------------------------------------------------------
# Terminal


def matrix_text(result: CompareResult) -> str:
    """The results matrix as aligned plain text: per row, the metric line, then parameters, seconds."""
    archs, bases = _archs(result), _baseline_names(result)
    header = ["data set", "metric", *archs, *(BASELINE_LABELS.get(b, b) for b in bases)]
    lines: list[list[str]] = []
    for r in result.rows:
        cells, best = _cell_lookup(r), r.best()
        arrow = "↑" if r.row.higher_is_better else "↓"
        values, params, secs = [r.row.dataset, f"{r.row.metric} {arrow}"], ["", "parameters"], ["", "train s"]
        for a in archs:
            c = cells.get(a)
            if c is None:
                values.append("n/a"), params.append(""), secs.append("")
            elif c.status != "ok":
                values.append(c.status), params.append(""), secs.append("")
            else:
                values.append(_value(c.value, r.row.metric) + (" *" if c is best else ""))
                params.append(_params(c.params)), secs.append(f"{c.train_seconds:.0f}")
        for b in bases:
            values.append(_value(r.baselines[b], r.row.metric) if b in r.baselines else "")
            params.append(""), secs.append("")
        lines += [values, params, secs]
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    fmt = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()  # noqa: E731
    out = [fmt(header), "  ".join("-" * w for w in widths)]
    for i, line in enumerate(lines):
        out.append(fmt(line))
        if i % 3 == 2 and i + 1 < len(lines):
            out.append("")
    status = _status_line(result)
    foot = f"* best of the row · budget {result.budget_seconds:.0f} s · wall time {result.wall_seconds:.0f} s"
    return "\n".join(([status, ""] if status else []) + out + ["", foot])


def verdicts(result: CompareResult) -> list[str]:
    """One sentence per row: who won, by how much, against what baseline."""
    out = []
    for r in result.rows:
        best = r.best()
        if best is None:
            out.append(f"{r.row.kind} ({r.row.dataset}): no cell finished.")
            continue
        text = f"{r.row.kind} ({r.row.dataset}): {best.arch} is best with {r.row.metric} {_value(best.value, r.row.metric)}"
        others = [c for c in r.cells if c.status == "ok" and c is not best and c.value is not None]
        if others:
            runner_up = (max if r.row.higher_is_better else min)(others, key=lambda c: c.value)
            text += f", ahead of {runner_up.arch} ({_value(runner_up.value, r.row.metric)})"
        if r.baselines:
            name, value = min(r.baselines.items(), key=lambda kv: -kv[1] if r.row.higher_is_better else kv[1])
            beats = best.value > value if r.row.higher_is_better else best.value < value
            text += (f"; it {'beats' if beats else 'does not beat'} the best baseline, "
                     f"{BASELINE_LABELS.get(name, name)} ({_value(value, r.row.metric)})")
        out.append(text + ".")
    return out


# ---------------------------------------------------------------------------------------------------
# Plots


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plots(result: CompareResult) -> dict[str, bytes]:
    """PNG images by file name: learning curves and predictions of every row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: dict[str, bytes] = {}
    for r in result.rows:
        ok = [c for c in r.cells if c.status == "ok" and c.curve]
        if ok:
            fig, ax = plt.subplots(figsize=(6.4, 3.6))
            for c in ok:
                ax.plot([p[0] for p in c.curve], [p[2] for p in c.curve], label=c.arch)
            ax.set(xlabel="training seconds", ylabel="training loss", title=f"{r.row.dataset}: learning curves")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
            images[f"{r.row.key}_curves.png"] = _png(fig)
        picture = {"classify": _digits_plot, "forecast": _forecast_plot}.get(r.row.task)
        if picture is not None and r.extra and "samples_error" not in r.extra:
            png = picture(r, plt)
            if png:
                images[f"{r.row.key}_predictions.png"] = png
    return images


def _digits_plot(r: RowResult, plt) -> bytes | None:
    best = r.best()
    if best is None or best.samples is None or "images" not in r.extra:
        return None
    images, labels, classes = r.extra["images"], r.extra["labels"], r.extra["classes"]
    n = len(images)
    fig, axes = plt.subplots(2, (n + 1) // 2, figsize=(1.1 * ((n + 1) // 2), 2.6))
    for ax, img, y, p in zip(axes.flat, images, labels, best.samples):
        ax.imshow(img, cmap="gray_r")
        ax.set_title(f"{classes[p]}", color="black" if p == y else "red", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{best.arch}'s labels for the first test images (red: wrong)", fontsize=9)
    return _png(fig)


def _forecast_plot(r: RowResult, plt) -> bytes | None:
    import numpy as np

    if "actual" not in r.extra:
        return None
    dates = np.array(r.extra["dates"], dtype="datetime64[D]")
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    if "history" in r.extra:
        hd = np.array(r.extra["history_dates"], dtype="datetime64[D]")[-48:]
        ax.plot(hd, r.extra["history"][-48:], color="0.5", label="history")
    ax.plot(dates, r.extra["actual"], color="black", lw=2, label="actual (held out)")
    for (name, values), style in zip(r.extra.get("baseline_forecasts", {}).items(), (":", "--", "-.")):
        ax.plot(dates, values, ls=style, color="0.3", label=BASELINE_LABELS.get(name, name))
    for c in r.cells:
        if c.status == "ok" and c.samples:
            ax.plot(dates, c.samples["predicted"], lw=1, label=f"{c.arch} ({_value(c.value, r.row.metric)})")
    ax.set(title=f"{r.row.dataset}: forecasts of the held-out months", ylabel=r.extra.get("unit", "value"))
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _png(fig)


# ---------------------------------------------------------------------------------------------------
# Markdown and HTML


def _matrix_rows(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    archs, bases = _archs(result), _baseline_names(result)
    header = ["data set", "metric", *archs, *(BASELINE_LABELS.get(b, b) for b in bases)]
    body = []
    for r in result.rows:
        cells, best = _cell_lookup(r), r.best()
        line = [r.row.dataset, f"{r.row.metric} ({'higher' if r.row.higher_is_better else 'lower'} is better)"]
        for a in archs:
            c = cells.get(a)
            if c is None:
                line.append("n/a")
            elif c.status != "ok":
                line.append(f"{c.status}")
            else:
                v = _value(c.value, r.row.metric)
                v = f"**{v}**" if c is best else v
                line.append(f"{v}<br>{_params(c.params)} params<br>{c.train_seconds:.0f} s")
        line += [_value(r.baselines[b], r.row.metric) if b in r.baselines else "" for b in bases]
        body.append(line)
    return header, body


def markdown(result: CompareResult, images: dict[str, str]) -> str:
    header, body = _matrix_rows(result)
    out = ["# archlab compare: which architecture fits which data", ""]
    status = _status_line(result)
    if status:
        out += [f"**{status}**", ""]
    out += [f"Budget {result.budget_seconds:.0f} s, wall time {result.wall_seconds:.0f} s, seed {result.seed}, "
            f"device {result.device}. Each cell: held-out metric, parameters, training seconds.", ""]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in body]
    out += ["", "## Verdicts", ""] + [f"- {v}" for v in verdicts(result)]
    for r in result.rows:
        out += ["", f"## {r.row.kind}: {r.row.dataset}", "", r.row.description, ""]
        for name in (f"{r.row.key}_curves.png", f"{r.row.key}_predictions.png"):
            if name in images:
                out += [f"![{name}]({images[name]})", ""]
        out += _metrics_table_md(r)
        if r.row.task == "seq2seq":
            out += _words_table_md(r)
        if "samples_error" in r.extra:
            out += [f"(no predictions shown: {r.extra['samples_error']})", ""]
        out += ["Reproduce a cell:", ""]
        for c in r.cells:
            if c.command:
                out += [f"- {c.arch}: `{c.command}`"]
            if c.error:
                out += [f"- {c.arch} failed: `{c.error}`"]
    return "\n".join(out) + "\n"


def _metric_names(r: RowResult) -> list[str]:
    names: list[str] = []
    for c in r.cells:
        names += [k for k in c.metrics if k not in names]
    return names


def _metrics_table_md(r: RowResult) -> list[str]:
    """Every held-out metric of every finished cell (the matrix shows one)."""
    ok, names = [c for c in r.cells if c.status == "ok"], _metric_names(r)
    if not ok:
        return []
    out = ["| architecture | model | steps | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 3)]
    for c in ok:
        out.append(f"| {c.arch} | {c.model} | {c.steps} | " + " | ".join(f"{c.metrics[n]:.4g}" if n in c.metrics else ""
                                                                  for n in names) + " |")
    return out + [""]


def _words_table_md(r: RowResult) -> list[str]:
    ok = [c for c in r.cells if c.status == "ok" and c.samples]
    if not ok:
        return []
    out = ["| word | reference | " + " | ".join(c.arch for c in ok) + " |", "|" + "---|" * (len(ok) + 2)]
    for i, (word, _, refs) in enumerate(ok[0].samples):
        preds = []
        for c in ok:
            pred = c.samples[i][1]
            preds.append(pred if pred in refs else f"~~{pred}~~")
        out.append(f"| {word} | {' / '.join(refs)} | " + " | ".join(preds) + " |")
    return out + [""]


def html_page(result: CompareResult, images: dict[str, bytes]) -> str:
    header, body = _matrix_rows(result)
    e = html.escape

    def cell_html(text: str) -> str:
        text = e(text).replace("&lt;br&gt;", "<br>")
        if text.startswith("**"):
            text = "<b>" + text[2:].replace("**", "", 1) + "</b>"
        return text

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>archlab compare</title><style>",
             "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.4em .6em;",
             "vertical-align:top;font-size:14px}th{background:#f3f3f3}.bad{color:#b00;text-decoration:line-through}",
             ".warn{background:#fee;border:1px solid #b00;padding:.6em}code{font-size:12px}</style></head><body>",
             "<h1>archlab compare: which architecture fits which data</h1>"]
    status = _status_line(result)
    if status:
        parts.append(f"<p class='warn'><b>{e(status)}</b></p>")
    parts.append(f"<p>Budget {result.budget_seconds:.0f} s, wall time {result.wall_seconds:.0f} s, seed "
                 f"{result.seed}, device {e(result.device)}. Each cell: held-out metric, parameters, training "
                 "seconds; the best of each row in bold.</p>")
    parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
    for line in body:
        parts.append("<tr>" + "".join(f"<td>{cell_html(x)}</td>" for x in line) + "</tr>")
    parts.append("</table><h2>Verdicts</h2><ul>" + "".join(f"<li>{e(v)}</li>" for v in verdicts(result)) + "</ul>")
    for r in result.rows:
        parts.append(f"<h2>{e(r.row.kind)}: {e(r.row.dataset)}</h2><p>{e(r.row.description)}</p>")
        for name in (f"{r.row.key}_curves.png", f"{r.row.key}_predictions.png"):
            if name in images:
                data = base64.b64encode(images[name]).decode()
                parts.append(f"<img alt='{e(name)}' src='data:image/png;base64,{data}'>")
        done, names = [c for c in r.cells if c.status == "ok"], _metric_names(r)
        if done:
            parts.append("<table><tr><th>architecture</th><th>model</th><th>steps</th>"
                         + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>")
            for c in done:
                parts.append(f"<tr><td>{e(c.arch)}</td><td>{e(c.model)}</td><td>{c.steps}</td>"
                             + "".join(f"<td>{c.metrics[n]:.4g}</td>" if n in c.metrics else "<td></td>"
                                       for n in names) + "</tr>")
            parts.append("</table>")
        ok = [c for c in r.cells if c.status == "ok" and c.samples]
        if r.row.task == "seq2seq" and ok:
            parts.append("<table><tr><th>word</th><th>reference</th>" + "".join(f"<th>{e(c.arch)}</th>" for c in ok)
                         + "</tr>")
            for i, (word, _, refs) in enumerate(ok[0].samples):
                tds = []
                for c in ok:
                    pred = c.samples[i][1]
                    tds.append(f"<td>{e(pred)}</td>" if pred in refs else f"<td class='bad'>{e(pred)}</td>")
                parts.append(f"<tr><td>{e(word)}</td><td>{e(' / '.join(refs))}</td>{''.join(tds)}</tr>")
            parts.append("</table>")
        if "samples_error" in r.extra:
            parts.append(f"<p>(no predictions shown: {e(r.extra['samples_error'])})</p>")
        parts.append("<p>Reproduce a cell:</p><ul>")
        for c in r.cells:
            if c.command:
                parts.append(f"<li>{e(c.arch)}: <code>{e(c.command)}</code></li>")
            if c.error:
                parts.append(f"<li>{e(c.arch)} failed: <code>{e(c.error)}</code></li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_reports(result: CompareResult, out: Path) -> dict[str, Path]:
    """Write result.json, the plots, report.md and report.html into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "result.json", "markdown": out / "report.md", "html": out / "report.html"}
    write_text_atomic(paths["json"], json.dumps(result.to_json(), indent=2) + "\n")
    images = plots(result)
    for name, png in images.items():
        (out / name).write_bytes(png)
    write_text_atomic(paths["markdown"], markdown(result, {n: n for n in images}))
    write_text_atomic(paths["html"], html_page(result, images))
    return paths
