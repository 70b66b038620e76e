"""An experiment's result as terminal text, ``result.json`` and a self-contained ``report.html``.

The page holds the claim and where the texts make it, the protocol, the criterion, the verdict
with every check's numbers, the plot (a PNG embedded as base64 data, so the page needs no other
file and no network) and the table. ``index.html`` lists several results with their verdicts.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Sequence

from archlab.experiments.core import Result, jsonable, table_text
from archlab.utils.io import write_text_atomic

VERDICT = {True: "HOLDS", False: "DOES NOT HOLD"}


def png(fig) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def data_uri(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


# --------------------------------------------------------------------------------------------------
# Terminal


def result_text(result: Result) -> str:
    """The table, the criterion, every check and the verdict, as the terminal prints them."""
    lines = [table_text(result.columns, result.table), ""]
    lines.append(f"criterion: {result.criterion}")
    for c in result.checks:
        lines.append(f"  - {c.describe()}")
    seeds = f"{result.seeds} seeds, 95% intervals" if result.seeds > 1 else "1 seed, no interval"
    lines.append(f"verdict: the claim {VERDICT[result.holds]} here ({result.size} protocol, {seeds}, "
                 f"{result.seconds:.0f} s)")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# HTML

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 1.8rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.verdict { font-size: 1.1rem; font-weight: bold; padding: 0.5rem 0.8rem; display: inline-block; border-radius: 4px; }
.holds { background: #e2f5e2; color: #1b5e20; } .fails { background: #fde4e1; color: #8e1b10; }
blockquote { border-left: 3px solid #bbb; margin: 0.5rem 0; padding: 0.2rem 0.8rem; color: #444; }
code, pre { background: #f6f6f6; } pre { padding: 0.6rem; overflow-x: auto; }
img { max-width: 100%; }
"""


def _table_html(result: Result) -> str:
    head = "".join(f"<th>{html.escape(c.label)}</th>" for c in result.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c.format(row.get(c.key)))}</td>" for c in result.columns)
                   + "</tr>" for row in result.table)
    return f"<table><tr>{head}</tr>{body}</table>"


def result_html(result: Result, command: str = "") -> str:
    e = html.escape
    verdict_class = "holds" if result.holds else "fails"
    checks = "".join(f"<li>{e(c.describe())}</li>" for c in result.checks)
    protocol = "".join(f"<tr><td>{e(str(k))}</td><td>{e(json.dumps(jsonable(v)))}</td></tr>"
                       for k, v in result.protocol.items())
    figure = f'<img alt="{e(result.title)}" src="{data_uri(result.figure)}">' if result.figure else ""
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    seeds = f"{result.seeds} seeds (mean ± 95% interval)" if result.seeds > 1 else "1 seed (no interval)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>archlab experiment: {e(result.name)}</title>
<style>{_STYLE}</style></head><body>
<h1>{e(result.title)} <small>({e(result.name)})</small></h1>
<p><b>Claim.</b> {e(result.claim)}</p>
<blockquote>{e(result.source)}</blockquote>
<p><b>Published result it echoes.</b> {e(result.reference)}</p>
<h2>Verdict</h2>
<p class="verdict {verdict_class}">The claim {VERDICT[result.holds]} here</p>
<p><b>Criterion.</b> {e(result.criterion)}</p>
<ul>{checks}</ul>
<p>{e(result.size)} protocol, {e(seeds)}, {result.seconds:.0f} s.</p>
<h2>Measurement</h2>
{figure}
{_table_html(result)}
{f'<ul>{notes}</ul>' if notes else ''}
<h2>Protocol</h2>
<table>{protocol}</table>
{f'<p>Reproduce: <code>{e(command)}</code></p>' if command else ''}
</body></html>
"""


def index_html(results: Sequence[Result], seconds: float) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><td><a href="{e(r.name)}/report.html">{e(r.name)}</a></td><td>{e(r.claim)}</td>'
        f'<td class="{"holds" if r.holds else "fails"}">{VERDICT[r.holds]}</td><td>{r.seconds:.0f} s</td></tr>'
        for r in results)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>archlab experiments</title><style>{_STYLE}</style></head><body>
<h1>The texts' claims, measured</h1>
<table><tr><th>experiment</th><th>claim</th><th>verdict</th><th>time</th></tr>{rows}</table>
<p>{len(results)} experiments in {seconds:.0f} s.</p>
</body></html>
"""


# --------------------------------------------------------------------------------------------------
# Files


def write_result(result: Result, out: Path, measurement: dict[str, Any] | None = None) -> dict[str, Path]:
    """``result.json`` (with the raw measurement under ``"measurement"``) and ``report.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    record = result.to_json()
    if measurement is not None:
        record["measurement"] = jsonable(measurement)
    paths = {"json": out / "result.json", "html": out / "report.html"}
    write_text_atomic(paths["json"], json.dumps(record, indent=2, allow_nan=False) + "\n")
    command = f"archlab experiment {result.name}" + (" --quick" if result.size == "quick" else "") + (
        f" --seeds {result.seeds}" if result.seeds > 1 else "")
    write_text_atomic(paths["html"], result_html(result, command))
    return paths
