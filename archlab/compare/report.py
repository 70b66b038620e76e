"""The bake-off's results as a terminal table, ``result.json``, ``report.md`` and a self-contained
``report.html`` (plots embedded as PNG data, no network needed to view it).

The matrix has one row per data set and one column per architecture; a cell gives the mean of the
held-out metric over the seeds with the half-width of its 95% interval, the parameter count, the
steps and the training seconds. A row's winner (``*``) is named only when its interval clears the
runner-up's; otherwise the best cells tie (``=`` marks every cell whose interval reaches the best
one's; with one seed there are no intervals and nothing is marked a win). Baselines stand in their
own column. Every number of a metric has one format (accuracy and error rates as percentages,
counts as integers: ``archlab.utils.formatting``). The table says how the cells were given their
work -- a fixed plan, or equal time each (time-boxed) -- and a run with a failed or missing cell
says INCOMPLETE at the top of every output.
"""

from __future__ import annotations

import html
import json
import platform
from pathlib import Path

from archlab.compare.baselines import LABELS as BASELINE_LABELS
from archlab.compare.plan import ARCHS
from archlab.compare.results import CellResult, CompareResult, RowResult
from archlab.compare.stats import tied_with_best
from archlab.inspect import pictures
from archlab.utils.formatting import format_count, format_interval, format_metric
from archlab.utils.io import write_text_atomic


def _archs(result: CompareResult) -> list[str]:
    used = {c.arch for r in result.rows for c in r.cells}
    return [a for a in ARCHS if a in used]


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


def _value_text(c: CellResult, metric: str) -> str:
    s = c.summary
    if s is None:
        return c.status
    return format_interval(metric, s.mean, None if s.low is None else (s.high - s.low) / 2)


def _marks(r: RowResult) -> dict[str, str]:
    """arch -> "*" (the clear winner) or "=" (tied with the best); nothing with one seed."""
    winner = r.winner()
    if winner is not None:
        return {winner.arch: "*"}
    summaries = r.summaries()
    if len(summaries) < 2 or any(s.low is None for s in summaries.values()):
        return {}
    return {a: "=" for a in tied_with_best(summaries, r.row.higher_is_better)}


def _baseline_text(r: RowResult, name: str) -> str:
    return f"{BASELINE_LABELS.get(name, name)} {format_metric(r.row.metric, r.baselines[name])}"


def _timing_line(result: CompareResult) -> str:
    seeds = (f"seeds {result.seeds[0]}..{result.seeds[-1]} ({len(result.seeds)})" if len(result.seeds) > 1
             else f"seed {result.seeds[0]}")
    took = f"wall time {_minutes(result.wall_seconds)}"
    if result.mode == "fixed" and result.estimate_seconds:
        took += (f" against the plan's estimate of {_minutes(result.estimate_seconds)} on a quiet 2-core CPU "
                 f"({result.wall_seconds / result.estimate_seconds:.2f}x)")
    return (f"{result.mode_label} · {seeds} · {result.jobs} process(es) x {result.threads} thread(s) · "
            f"device {result.device} · {took}")


def _minutes(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


# ---------------------------------------------------------------------------------------------------
# Terminal


def matrix_text(result: CompareResult) -> str:
    """The results matrix as aligned plain text: per row the metric line, then parameters, steps, seconds."""
    archs = _archs(result)
    header = ["data set", "metric", *archs, "baselines"]
    blocks: list[list[list[str]]] = []
    for r in result.rows:
        cells, marks = {c.arch: c for c in r.cells}, _marks(r)
        arrow = "↑" if r.row.higher_is_better else "↓"
        block = [[r.row.dataset, f"{r.row.metric} {arrow}"], ["", "parameters"], ["", "steps"], ["", "train s"]]
        averaged = _has_ensembles(r)
        if averaged:
            block.append(["", "seed ensemble"])
        for a in archs:
            c = cells.get(a)
            if c is None:
                texts = ["n/a", "", "", ""]
            elif c.status != "ok":
                texts = [c.status, "", "", ""]
            else:
                texts = [_value_text(c, r.row.metric) + (f" {marks[a]}" if a in marks else ""), format_count(c.params),
                         f"{c.steps:,}", f"{c.train_seconds:.0f}"]
            if averaged:
                texts.append(_ensemble_text(c, r.row.metric))
            for line, text in zip(block, texts):
                line.append(text)
        names = list(r.baselines)
        for i, line in enumerate(block):
            line.append(_baseline_text(r, names[i]) if i < len(names) else "")
        if len(names) > len(block):
            block[-1][-1] += ", " + ", ".join(_baseline_text(r, n) for n in names[len(block):])
        blocks.append(block)
    widths = [max(len(str(x[i])) for x in [header, *(line for b in blocks for line in b)]) for i in range(len(header))]
    fmt = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()  # noqa: E731
    out = [fmt(header), "  ".join("-" * w for w in widths)]
    for i, block in enumerate(blocks):
        out += ([""] if i else []) + [fmt(line) for line in block]
    status = _status_line(result)
    legend = ("values: mean ±half-width of the 95% interval over the seeds; * the row's winner (its interval "
              "clears the runner-up's), = tied with the best" if len(result.seeds) > 1 else
              "one seed: no intervals, so no winner is declared (--seeds 3 gives means with 95% intervals)")
    if any(_has_ensembles(r) for r in result.rows):
        legend += "; " + ENSEMBLE_LEGEND
    return "\n".join(([status, ""] if status else []) + out + ["", legend, _timing_line(result)])


ENSEMBLE_MEANING = "the seeds' models as one, their predictions averaged, on the same test split"
ENSEMBLE_LEGEND = f"seed ensemble: {ENSEMBLE_MEANING} (n/a: not averaged; result.json says why)"


def _has_ensembles(r: RowResult) -> bool:
    return any(c.ensemble or c.ensemble_note for c in r.cells)


def _ensemble_text(c: CellResult | None, metric: str) -> str:
    if c is None or c.status != "ok" or not (c.ensemble or c.ensemble_note):
        return ""
    return format_metric(metric, c.ensemble[metric]) if metric in c.ensemble else "n/a"


def verdicts(result: CompareResult) -> list[str]:
    """One sentence per row: who won (or who tied), and against which baseline."""
    out = []
    for r in result.rows:
        best = r.best()
        metric = r.row.metric
        if best is None:
            out.append(f"{r.row.kind} ({r.row.dataset}): no cell finished.")
            continue
        order, _ = r.ranking()
        cells = {c.arch: c for c in r.cells}
        winner = r.winner()
        n = len(result.seeds)
        if winner is not None:
            runner_up = cells[order[1]]
            text = (f"{r.row.kind} ({r.row.dataset}): {winner.arch} wins on {metric} with "
                    f"{_value_text(winner, metric)} over {n} seeds, its 95% interval clear of the runner-up "
                    f"{runner_up.arch} ({_value_text(runner_up, metric)})")
        elif n == 1 or len(order) < 2:
            text = (f"{r.row.kind} ({r.row.dataset}): {best.arch} has the best {metric}, "
                    f"{_value_text(best, metric)}" + (f", then {order[1]} ({_value_text(cells[order[1]], metric)})"
                                                      if len(order) > 1 else "")
                    + (" -- one seed, so no interval: not a verdict" if len(order) > 1 else ""))
        else:
            tied = tied_with_best(r.summaries(), r.row.higher_is_better)
            text = (f"{r.row.kind} ({r.row.dataset}): a tie on {metric} between "
                    + ", ".join(f"{a} ({_value_text(cells[a], metric)})" for a in tied)
                    + ": their 95% intervals overlap")
        averaged = [c for c in r.cells if c.status == "ok" and metric in c.ensemble]
        if averaged:
            pick = max if r.row.higher_is_better else min
            top = pick(averaged, key=lambda c: c.ensemble[metric])
            text += (f"; as seed ensembles (each cell's {n} seeds' predictions averaged) {top.arch} scores best, "
                     f"{format_metric(metric, top.ensemble[metric])}")
        if r.baselines:
            name, value = (max if r.row.higher_is_better else min)(r.baselines.items(), key=lambda kv: kv[1])
            beats = best.value > value if r.row.higher_is_better else best.value < value
            text += (f"; the best mean {'beats' if beats else 'does not beat'} the best baseline, "
                     f"{BASELINE_LABELS.get(name, name)} ({format_metric(metric, value)})")
        out.append(text + ".")
    return out


# ---------------------------------------------------------------------------------------------------
# Plots


def plots(result: CompareResult) -> dict[str, bytes]:
    """PNG images by file name: each row's training and validation curves and its predictions."""
    images: dict[str, bytes] = {}
    for r in result.rows:
        firsts = {c.arch: c.first for c in r.cells if c.first is not None and c.first.status == "ok"}
        runs = {a: (run.curve, [(step, m[r.row.metric]) for step, m in run.val_curve if r.row.metric in m])
                for a, run in firsts.items()}
        seed = f" (seed {result.seeds[0]})" if len(result.seeds) > 1 else ""
        kept = {a: run.selected_step for a, run in firsts.items()}
        curves = pictures.curves_png(runs, r.row.metric, f"{r.row.dataset}: training loss and validation "
                                                         f"{r.row.metric}{seed}; * the kept weights", kept)
        if curves:
            images[f"{r.row.key}_curves.png"] = curves
        samples = {a: run.samples for a, run in firsts.items() if isinstance(run.samples, dict)
                   and "error" not in run.samples}
        if r.row.task == "classify" and samples and "classes" in r.extra:
            png = pictures.digits_png({a: s["wrong"] for a, s in samples.items()}, r.extra["classes"])
            if png:
                images[f"{r.row.key}_misclassified.png"] = png
        if r.row.task == "forecast" and "actual" in r.extra:
            # The forecasts the row's metric scores: one-step ones for rmse_1step, else the multi-step one.
            one = r.row.metric.endswith("_1step")
            key, base_key = ("one_step", "one_step") if one else ("predicted", "forecast")
            forecasts = {f"{a} ({format_metric(r.row.metric, firsts[a].metrics.get(r.row.metric))})": s[key]
                         for a, s in samples.items() if key in s}
            base = {BASELINE_LABELS.get(k, k): v[base_key] for k, v in r.baseline_details.items() if base_key in v}
            what = "one-step forecasts over" if one else "forecasts of"
            png = pictures.forecast_png(r.extra, forecasts, base, f"{r.row.dataset}: {what} the held-out part{seed}")
            if png:
                images[f"{r.row.key}_forecasts.png"] = png
    return images


# ---------------------------------------------------------------------------------------------------
# Markdown and HTML


def _cell_parts(r: RowResult, c: CellResult | None, marks: dict[str, str]) -> tuple[str, str, str]:
    """(value text, meta text, css class) of one matrix cell."""
    if c is None:
        return "n/a", "", ""
    if c.status != "ok":
        return c.status, "", "bad"
    mark = marks.get(c.arch, "")
    meta = f"{format_count(c.params)} params · {c.steps:,} steps · {c.train_seconds:.0f} s"
    if r.row.metric in c.ensemble:
        meta += f" · seed ensemble {format_metric(r.row.metric, c.ensemble[r.row.metric])}"
    return _value_text(c, r.row.metric) + (f" {mark}" if mark else ""), meta, {"*": "win", "=": "tie"}.get(mark, "")


def _row_label(r: RowResult) -> str:
    return f"{r.row.dataset}, {r.row.metric} ({'higher' if r.row.higher_is_better else 'lower'} is better)"


def markdown(result: CompareResult, images: dict[str, str]) -> str:
    archs = _archs(result)
    out = ["# archlab compare: which architecture fits which data", ""]
    status = _status_line(result)
    if status:
        out += [f"**{status}**", ""]
    out += [_timing_line(result) + ".", ""]
    out += ["| data set | " + " | ".join(archs) + " | baselines |", "|" + "---|" * (len(archs) + 2)]
    for r in result.rows:
        cells, marks = {c.arch: c for c in r.cells}, _marks(r)
        line = [_row_label(r)]
        for a in archs:
            value, meta, css = _cell_parts(r, cells.get(a), marks)
            value = f"**{value}**" if css == "win" else value
            line.append(value + (f"<br>{meta}" if meta else ""))
        line.append("<br>".join(_baseline_text(r, n) for n in r.baselines))
        out.append("| " + " | ".join(line) + " |")
    out += ["", _legend(result), "", "## Verdicts", ""] + [f"- {v}" for v in verdicts(result)]
    for r in result.rows:
        out += ["", f"## {r.row.kind}: {r.row.dataset}", "", r.row.description, ""]
        for name in _row_images(r):
            if name in images:
                out += [f"![{name}]({images[name]})", ""]
        out += _metrics_table_md(r)
        if r.row.task == "seq2seq":
            out += _words_table_md(r)
        out += _commands_md(r)
    return "\n".join(out) + "\n"


def _legend(result: CompareResult) -> str:
    if len(result.seeds) > 1:
        averaged = any(_has_ensembles(r) for r in result.rows)
        return ("Each cell: the mean over the seeds ±the half-width of its 95% t-interval; parameters, steps, "
                "training seconds" + (f", and the seed ensemble: {ENSEMBLE_MEANING}" if averaged else "")
                + ". * the row's winner: its interval clears the runner-up's. = tied with the best: "
                "the intervals overlap.")
    return ("Each cell: the held-out metric, parameters, steps, training seconds. One seed: no intervals, so no "
            "winner is declared (`--seeds 3` gives means with 95% intervals).")


def _row_images(r: RowResult) -> list[str]:
    return [f"{r.row.key}_{kind}.png" for kind in ("curves", "misclassified", "forecasts")]


def _metric_names(r: RowResult) -> list[str]:
    names: list[str] = []
    for c in r.cells:
        names += [k for k in c.metric_means() if k not in names]
    return names


def _metrics_table_md(r: RowResult) -> list[str]:
    ok, names = [c for c in r.cells if c.status == "ok"], _metric_names(r)
    if not ok:
        return []
    out = ["Every test metric (mean over the seeds):", "",
           "| architecture | model | steps | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 3)]
    for c in ok:
        m = c.metric_means()
        out.append(f"| {c.arch} | {c.model} | {c.steps:,} | " + " | ".join(format_metric(n, m.get(n)) for n in names)
                   + " |")
    if r.baseline_details:
        out += ["", "Baselines: " + "; ".join(
            f"{BASELINE_LABELS.get(k, k)} " + ", ".join(f"{n} {format_metric(n, v)}" for n, v in d.items()
                                                      if isinstance(v, (int, float)) and n != "C")
            for k, d in r.baseline_details.items())]
    return out + [""]


def _word_rows(r: RowResult) -> tuple[list[CellResult], list]:
    ok = [c for c in r.cells if c.first is not None and isinstance(c.first.samples, list)]
    return ok, (ok[0].first.samples if ok else [])


def _words_table_md(r: RowResult) -> list[str]:
    ok, words = _word_rows(r)
    if not ok:
        return []
    out = ["Pronunciations of test words; phonemes that differ from the closest reference in **bold**, a missing "
           "one as **_**:", "", "| word | reference | " + " | ".join(c.arch for c in ok) + " |",
           "|" + "---|" * (len(ok) + 2)]
    for i, (word, _, refs) in enumerate(words):
        preds = []
        for c in ok:
            pred = c.first.samples[i][1].split()
            ref = pictures.closest(pred, [x.split() for x in refs])
            preds.append(pictures.marked_tokens(pred, ref, markdown=True) or "(nothing)")
        out.append(f"| {word} | {' / '.join(refs)} | " + " | ".join(preds) + " |")
    return out + [""]


def _commands_md(r: RowResult) -> list[str]:
    out = ["Reproduce a cell (the first seed; other seeds: the same with `--seed N` and their own `--out`):", ""]
    for c in r.cells:
        first = c.first
        if first is not None and first.command:
            out.append(f"- {c.arch}: `{first.command}`")
        if c.error:
            out.append(f"- {c.arch} failed: `{c.error}`")
    return out


def html_page(result: CompareResult, images: dict[str, bytes]) -> str:
    e = html.escape
    archs = _archs(result)
    body = ["<h1>archlab compare: which architecture fits which data</h1>"]
    status = _status_line(result)
    if status:
        body.append(f"<p class='warn'><b>{e(status)}</b></p>")
    body.append(f"<p>{e(_timing_line(result))}; torch {e(_torch_version())}, Python {e(platform.python_version())}."
                "</p>")
    body.append("<table class='main'><tr><th style='width:16%'>data set</th>"
                + "".join(f"<th>{e(a)}</th>" for a in archs) + "<th style='width:15%'>baselines</th></tr>")
    for r in result.rows:
        cells, marks = {c.arch: c for c in r.cells}, _marks(r)
        tds = [f"<td><b>{e(r.row.dataset)}</b><br><span class='meta'>{e(r.row.metric)} "
               f"({'higher' if r.row.higher_is_better else 'lower'} is better)</span></td>"]
        for a in archs:
            value, meta, css = _cell_parts(r, cells.get(a), marks)
            tds.append(f"<td><span class='{css}'>{e(value)}</span>"
                       + (f"<br><span class='meta'>{e(meta)}</span>" if meta else "") + "</td>")
        tds.append("<td class='meta'>" + "<br>".join(e(_baseline_text(r, n)) for n in r.baselines) + "</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    body.append(f"</table><p class='meta'>{e(_legend(result))}</p>")
    body.append("<h2>Verdicts</h2><ul>" + "".join(f"<li>{e(v)}</li>" for v in verdicts(result)) + "</ul>")
    for r in result.rows:
        body.append(f"<h2>{e(r.row.kind)}: {e(r.row.dataset)}</h2><p>{e(r.row.description)}</p>")
        for name in _row_images(r):
            if name in images:
                body.append(pictures.img_html(images[name], name))
        body += _metrics_table_html(r)
        if r.row.task == "seq2seq":
            body += _words_table_html(r)
        body.append("<p>Reproduce a cell (the first seed; other seeds: the same with <code>--seed N</code> and "
                    "their own <code>--out</code>):</p><ul>")
        for c in r.cells:
            if c.first is not None and c.first.command:
                body.append(f"<li>{e(c.arch)}: <code>{e(c.first.command)}</code></li>")
            if c.error:
                body.append(f"<li class='bad'>{e(c.arch)} failed: <code>{e(c.error)}</code></li>")
        body.append("</ul>")
    return pictures.html_page("archlab compare", body)


def _torch_version() -> str:
    import torch

    return torch.__version__


def _metrics_table_html(r: RowResult) -> list[str]:
    e = html.escape
    ok, names = [c for c in r.cells if c.status == "ok"], _metric_names(r)
    if not ok:
        return []
    out = ["<table><tr><th>architecture</th><th>model</th><th>steps</th>"
           + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"]
    for c in ok:
        m = c.metric_means()
        out.append(f"<tr><td>{e(c.arch)}</td><td>{e(c.model)}</td><td>{c.steps:,}</td>"
                   + "".join(f"<td>{e(format_metric(n, m.get(n)))}</td>" for n in names) + "</tr>")
    out.append("</table>")
    if r.baseline_details:
        items = []
        for k, d in r.baseline_details.items():
            shown = ", ".join(f"{n} {format_metric(n, v)}" for n, v in d.items()
                              if isinstance(v, (int, float)) and n != "C")
            items.append(f"<li>{e(BASELINE_LABELS.get(k, k))}: {e(shown)}</li>")
        out.append("<p>Baselines on the same test split:</p><ul>" + "".join(items) + "</ul>")
    return out


def _words_table_html(r: RowResult) -> list[str]:
    e = html.escape
    ok, words = _word_rows(r)
    if not ok:
        return []
    out = ["<p>Pronunciations of test words; phonemes that differ from the closest reference in "
           "<b class='bad'>red</b>, a missing one as <b class='bad'>_</b>:</p>",
           "<table><tr><th>word</th><th>reference</th>" + "".join(f"<th>{e(c.arch)}</th>" for c in ok) + "</tr>"]
    for i, (word, _, refs) in enumerate(words):
        tds = []
        for c in ok:
            pred = c.first.samples[i][1].split()
            ref = pictures.closest(pred, [x.split() for x in refs])
            tds.append(f"<td class='tokens'>{pictures.marked_tokens(pred, ref) or '(nothing)'}</td>")
        out.append(f"<tr><td>{e(word)}</td><td class='tokens'>{e(' / '.join(refs))}</td>{''.join(tds)}</tr>")
    out.append("</table>")
    return out


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
