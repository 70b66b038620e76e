"""Pictures and page pieces that reports share: PNG figures made with matplotlib (no display
needed), embedded in self-contained HTML, and marked-up predictions.

    curves_png      training loss and a validation metric against the step, one line per run
    forecast_png    a series' recent history, its held-out part and forecasts of it
    digits_png      misclassified images, one row per model, "true -> predicted" above each
    confusion_png   a confusion matrix (true class down, predicted across), counts in the cells
    marked_tokens   a predicted token sequence against its closest reference, the differences marked
    html_page       one self-contained page: a title, CSS for tables readable at 800 px, the body

Every figure is returned as PNG bytes; ``img_html`` inlines them as ``data:`` URIs, so a page
needs no other file and no network.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Sequence

from archlab.utils.formatting import format_metric

LINE_STYLES = (":", "--", "-.", (0, (1, 3)), (0, (5, 2, 1, 2)))


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def img_html(data: bytes, alt: str) -> str:
    return (f"<img alt='{html.escape(alt)}' style='max-width:100%' "
            f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")


def curves_png(runs: dict[str, tuple[Sequence, Sequence]], metric: str, title: str,
               kept: dict[str, int] | None = None) -> bytes | None:
    """``runs``: label -> (train points [(step, loss)], validation points [(step, value of metric)]);
    ``kept``: label -> the step whose weights the run kept, starred on its validation curve."""
    if not any(train or val for train, val in runs.values()):
        return None
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.2))
    starred = False
    for i, (label, (train, val)) in enumerate(runs.items()):
        color = f"C{i % 10}"
        if train:
            left.plot([p[0] for p in train], [p[1] for p in train], color=color, lw=1, label=label)
        if val:
            right.plot([p[0] for p in val], [p[1] for p in val], color=color, marker="o", ms=3, lw=1, label=label)
        at = [p for p in val if kept and p[0] == kept.get(label)]
        if at:
            right.plot([at[-1][0]], [at[-1][1]], color=color, marker="*", ms=11, mec="black", mew=0.6, ls="none",
                       label=None if starred else "kept weights")
            starred = True
    left.set(xlabel="step", ylabel="training loss", title="training loss")
    positive = [p[1] for train, _ in runs.values() for p in train]
    if positive and min(positive) > 0:
        left.set_yscale("log")
    percent = format_metric(metric, 0.5).endswith("%")
    right.set(xlabel="step", ylabel=f"validation {metric}" + (" (%)" if percent else ""),
              title=f"validation {metric}")
    if percent:
        right.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    handles, labels = left.get_legend_handles_labels() or right.get_legend_handles_labels()
    if not handles:
        handles, labels = right.get_legend_handles_labels()
    handles, labels = list(handles), list(labels)
    for h, lab in zip(*right.get_legend_handles_labels()):
        if lab == "kept weights" and lab not in labels:
            handles.append(h)
            labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.06))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)


def _dates(values: Sequence[str]):
    import numpy as np

    try:
        return np.array(values, dtype="datetime64[D]")
    except ValueError:
        return np.array([float(v) for v in values])


def series_context(task, history: int = 48) -> dict[str, Any]:
    """What a forecast plot draws besides forecasts: the last ``history`` values before the test part,
    the test part's dates and values, the unit (from a ``forecast`` task)."""
    import numpy as np

    def plain(x) -> list:
        return [v if isinstance(v, (int, float)) else str(v) for v in np.asarray(x).tolist()]

    h_dates, h_values = task.history_before_test()
    lo, hi = task.split_bounds("test")
    return {"dates": plain(task.dates_or_steps(lo, hi)), "actual": plain(task.values[lo:hi]),
            "unit": task.series.unit or "value", "history_dates": plain(h_dates[-history:]),
            "history": plain(h_values[-history:])}


def forecast_png(extra: dict[str, Any], forecasts: dict[str, Sequence[float]], baselines: dict[str, Sequence[float]],
                 title: str) -> bytes | None:
    """``extra``: history_dates, history, dates, actual, unit (``series_context``)."""
    if "actual" not in extra:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 3.6))
    dates = _dates(extra["dates"])
    if extra.get("history"):
        ax.plot(_dates(extra["history_dates"]), extra["history"], color="0.55", label="history")
    ax.plot(dates, extra["actual"], color="black", lw=2, label="actual (held out)")
    for (name, values), style in zip(baselines.items(), LINE_STYLES):
        ax.plot(dates, values, ls=style, color="0.35", lw=1, label=name)
    for i, (name, values) in enumerate(forecasts.items()):
        ax.plot(dates, values, lw=1.2, color=f"C{i % 10}", label=name)
    ax.set(title=title, ylabel=extra.get("unit", "value"))
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    return png(fig)


def digits_png(rows: dict[str, Sequence[dict]], classes: Sequence[str], per_row: int = 10) -> bytes | None:
    """``rows``: label -> misclassified images ``{"pixels": 2-D list, "true": k, "predicted": j}``."""
    rows = {k: list(v)[:per_row] for k, v in rows.items() if v}
    if not rows:
        return None
    plt = pyplot()
    n_cols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(0.85 * n_cols + 1.2, 1.05 * len(rows)), squeeze=False)
    for r, (label, wrong) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(wrong):
                w = wrong[c]
                ax.imshow(w["pixels"], cmap="gray_r")
                ax.set_title(f"{classes[w['true']]}→{classes[w['predicted']]}", fontsize=8, color="#b00")
        axes[r][0].text(-0.15, 0.5, label, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle("misclassified test digits (true → predicted)", fontsize=9, y=1.04)
    return png(fig)


def confusion_png(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> bytes:
    import numpy as np

    plt = pyplot()
    m = np.asarray(confusion)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(0.42 * k + 1.6, 0.42 * k + 1.2))
    ax.imshow(np.log1p(m), cmap="Blues")
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > m.max() / 2 else ("#b00" if i != j else "black"))
    ax.set_xticks(range(k), classes, fontsize=7, rotation=90 if max(map(len, classes)) > 2 else 0)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return png(fig)


def marked_tokens(predicted: Sequence[str], reference: Sequence[str], *, markdown: bool = False) -> str:
    """``predicted`` with each token that differs from ``reference`` marked, and a gap marked where a
    reference token is missing: HTML ``<b class='bad'>`` (or Markdown ``**X**``, ``**_**``)."""
    from archlab.data.pronunciation import edit_alignment

    out = []
    for op, p, r in edit_alignment(list(predicted), list(reference)):
        if op == "=":
            out.append(p if markdown else html.escape(p))
        elif op == "-":
            out.append("**_**" if markdown else f"<b class='bad' title='missing {html.escape(r)}'>_</b>")
        else:
            title = f"{r} expected" if op == "~" else "not in the reference"
            out.append(f"**{p}**" if markdown else f"<b class='bad' title='{html.escape(title)}'>{html.escape(p)}</b>")
    return " ".join(out)


def closest(predicted: Sequence[str], references: Sequence[Sequence[str]]) -> Sequence[str]:
    from archlab.data.pronunciation import edit_distance

    return min(references, key=lambda r: (edit_distance(list(predicted), list(r)), -len(r)))


CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.35}
table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ccc;padding:.3em .45em;vertical-align:top;
font-size:13px;text-align:left}th{background:#f3f3f3}
table.main{width:100%;max-width:800px;table-layout:fixed}table.main td,table.main th{overflow-wrap:anywhere}
.meta{color:#666;font-size:11px}.bad{color:#b00}.win{font-weight:bold}.tie{font-style:italic}
.warn{background:#fee;border:1px solid #b00;padding:.6em}code{font-size:12px;overflow-wrap:anywhere}
.tokens{font-family:ui-monospace,monospace;font-size:12px}
"""


def html_page(title: str, body: Sequence[str]) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
