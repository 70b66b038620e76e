"""One self-contained HTML page: sections of text, tables, bars, heatmaps and images.

Nothing is fetched: the style sheet and the little script are in the page, every image is an
inline base64 PNG (``archlab.explain.render``). Heatmaps are drawn one pixel per value and
enlarged by the browser; their row and column labels (tokens, time steps, units) are HTML text
aligned with the cells, so they stay sharp and can be selected. The script only makes things
respond: a click on an attention thumbnail shows that map at full size with its tokens, and the
sliders of the sampling section recompute the next-token distribution. Without it the page shows
the same content, unanimated.

    page = Page("lenet5")
    s = page.section("layers", "Layers")
    s.table(["layer", "shape"], rows)
    page.write(path)
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from archlab.explain import render

e = html.escape

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dde5; --accent: #2c728e; --bg: #fafbfc; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: var(--bg); margin: 0; }
header.page { background: #1d2330; color: #fff; padding: 18px 28px; }
header.page h1 { margin: 0 0 4px; font-size: 22px; }
header.page p { margin: 2px 0; color: #c9d1df; }
header.page .warn { color: #ffd27a; font-weight: 600; }
nav.toc { padding: 8px 28px; background: #eef1f5; border-bottom: 1px solid var(--line); }
nav.toc a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; }
main { padding: 8px 28px 40px; max-width: 1400px; }
section.explain { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 18px 0;
                  padding: 6px 18px 16px; }
section.explain > h2 { font-size: 18px; margin: 12px 0 6px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
p.intro, p.note, figcaption, .muted { color: var(--muted); }
p.intro { margin: 4px 0 10px; max-width: 980px; }
table.data { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 6px 0; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left;
                               white-space: nowrap; vertical-align: top; }
table.data td:has(.tokens) { white-space: normal; min-width: 320px; max-width: 760px; }
table.data td.num, table.data th.num { text-align: right; }
table.data tr.depth1 td:first-child { padding-left: 22px; } table.data tr.depth2 td:first-child { padding-left: 36px; }
table.data tr.depth3 td:first-child { padding-left: 50px; } table.data tr.depth4 td:first-child { padding-left: 64px; }
.flex { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 6px 0; }
figcaption { font-size: 12px; margin-top: 3px; max-width: 520px; }
img.px { image-rendering: pixelated; image-rendering: crisp-edges; display: block; }
.hm { display: inline-grid; grid-template-columns: auto auto; align-items: end; column-gap: 4px; }
.hm .cols { display: flex; }
.hm .cols span { writing-mode: vertical-rl; transform: rotate(180deg); font-size: 11px; overflow: hidden;
                 text-overflow: ellipsis; white-space: nowrap; max-height: 90px; text-align: left; }
.hm .rows { display: flex; flex-direction: column; align-items: flex-end; }
.hm .rows span { font-size: 11px; white-space: nowrap; overflow: hidden; max-width: 140px; }
.legend { display: flex; align-items: center; gap: 6px; font-size: 11px; color: var(--muted); margin-top: 4px; }
.legend .bar { width: 120px; height: 10px; border: 1px solid var(--line); }
.bars { display: grid; grid-template-columns: max-content 260px max-content; gap: 2px 8px; align-items: center;
        font-variant-numeric: tabular-nums; font-size: 13px; }
.bars .track { background: #eef1f5; height: 14px; border-radius: 2px; }
.bars .fill { background: var(--accent); height: 14px; border-radius: 2px; }
.bars .fill.off { background: #c4cad4; }
.bars .fill.hi { background: #d6604d; }
.tokens span { display: inline-block; padding: 1px 3px; margin: 1px; border-radius: 3px; font-family: monospace;
               border: 1px solid var(--line); }
.explorer .thumbs { display: grid; gap: 4px; margin-top: 8px; }
.explorer button.thumb { border: 2px solid transparent; padding: 0; background: none; cursor: pointer; }
.explorer button.thumb.on { border-color: #d6604d; }
.explorer .thumbs .rowhead { font-size: 11px; color: var(--muted); align-self: center; }
.explorer .thumbs .colhead { font-size: 11px; color: var(--muted); text-align: center; }
.sampling label { display: inline-block; margin-right: 18px; }
.sampling output { font-variant-numeric: tabular-nums; display: inline-block; min-width: 3em; }
code, .mono { font-family: ui-monospace, Menlo, Consolas, monospace; }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
"""

SCRIPT = """
(function () {
  document.querySelectorAll('[data-explorer]').forEach(function (ex) {
    var detail = ex.querySelector('img.detail');
    var title = ex.querySelector('.detail-title');
    var thumbs = ex.querySelectorAll('button.thumb');
    thumbs.forEach(function (b) {
      b.addEventListener('click', function () {
        detail.src = b.querySelector('img').src;
        title.textContent = b.getAttribute('data-title');
        thumbs.forEach(function (o) { o.classList.remove('on'); });
        b.classList.add('on');
      });
    });
  });
  document.querySelectorAll('[data-sampling]').forEach(function (root) {
    var d = JSON.parse(root.querySelector('script[type="application/json"]').textContent);
    var n = d.logits.length;
    var T = root.querySelector('input[name=temperature]');
    var K = root.querySelector('input[name=top_k]');
    var P = root.querySelector('input[name=top_p]');
    var bars = root.querySelector('.bars');
    var info = root.querySelector('.sampling-info');
    function softmax(z, keep) {
      var m = -Infinity, i, s = 0, p = new Array(n);
      for (i = 0; i < n; i++) if (keep[i] && z[i] > m) m = z[i];
      for (i = 0; i < n; i++) { p[i] = keep[i] ? Math.exp(z[i] - m) : 0; s += p[i]; }
      for (i = 0; i < n; i++) p[i] /= s;
      return p;
    }
    function update() {
      var t = Math.pow(10, parseFloat(T.value)), k = parseInt(K.value, 10), top = parseFloat(P.value);
      var z = d.logits.map(function (l) { return l / t; });
      var order = z.map(function (_, i) { return i; }).sort(function (a, b) { return z[b] - z[a]; });
      var keep = new Array(n).fill(true), i, cum = 0;
      if (k > 0 && k < n) order.slice(k).forEach(function (j) { keep[j] = false; });
      var p = softmax(z, keep);
      if (top < 1) {
        order.forEach(function (j) { if (cum >= top) keep[j] = false; cum += p[j]; });
        p = softmax(z, keep);
      }
      var kept = keep.filter(function (x) { return x; }).length, H = 0;
      p.forEach(function (q) { if (q > 0) H -= q * Math.log2(q); });
      root.querySelector('output[name=t]').textContent = t.toFixed(2);
      root.querySelector('output[name=k]').textContent = k > 0 ? String(k) : 'off';
      root.querySelector('output[name=p]').textContent = top < 1 ? top.toFixed(2) : 'off';
      info.textContent = kept + ' of ' + d.vocab + ' tokens can be drawn; entropy ' + H.toFixed(2) + ' bits' +
        (d.vocab > n ? ' (the ' + n + ' most likely tokens shown; the rest hold ' +
        (100 * d.rest).toFixed(3) + '% at T = 1)' : '');
      var html = '', top = 0;
      order.slice(0, d.show).forEach(function (j) { if (p[j] > top) top = p[j]; });
      order.slice(0, d.show).forEach(function (j) {
        var w = top > 0 ? (100 * p[j] / top).toFixed(1) : '0';
        html += '<span class="mono">' + d.tokens[j] + '</span><div class="track"><div class="fill' +
          (keep[j] ? '' : ' off') + '" style="width:' + w + '%"></div></div><span>' + (100 * p[j]).toFixed(1) +
          '%</span>';
      });
      bars.innerHTML = html;
    }
    [T, K, P].forEach(function (el) { el.addEventListener('input', update); });
    update();
  });
})();
"""


def fmt(x: float, digits: int = 3) -> str:
    """A number for a table: ``1.23e-05``, ``0.0123``, ``12.3``, ``1,234``."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "--" if x is None else str(x)
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    a = abs(x)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if a < 1 else f"{x:,.{max(digits - len(str(int(a))), 0)}f}"


def _img(uri: str, width: int, height: int, *, cls: str = "px", title: str = "", extra: str = "") -> str:
    t = f" title='{e(title)}'" if title else ""
    return f"<img class='{cls}' src='{uri}' width='{width}' height='{height}' alt='{e(title)}'{t}{extra}>"


def cell_size(rows: int, cols: int, target: int = 380, smallest: int = 4, largest: int = 30) -> int:
    """Pixels per heatmap cell so that the map is about ``target`` pixels on its longer side."""
    return int(max(smallest, min(largest, target // max(rows, cols, 1))))


def legend(cmap: str, lo: float, hi: float, label: str = "", relative: bool = False) -> str:
    ends = ("0", "100%") if relative else (fmt(lo), fmt(hi))
    return (f"<div class='legend'><span>{e(ends[0])}</span><span class='bar' style='background:"
            f"{render.css_gradient(cmap)}'></span><span>{e(ends[1])}</span><span>{e(label)}</span></div>")


def _range(values: np.ndarray, cmap: str, vmin, vmax) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if cmap == "diverging" and vmin is None and vmax is None:
        b = float(np.abs(finite).max()) if finite.size else 1.0
        return -b, b
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    return lo, hi


def heatmap(values: np.ndarray, *, rows: Sequence[str] | None = None, cols: Sequence[str] | None = None,
            cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None, cell: int | None = None,
            caption: str = "", legend_label: str = "", img_cls: str = "px", title: str = "",
            relative: bool = False) -> str:
    """A (R, C) array as a heatmap with its row and column labels; returns a ``<figure>``.

    ``cell`` fixes square cells; by default each side gets about 380 pixels, cells between 10 (with
    labels; 3 without) and 30 pixels, so a map of 32 units over 6 steps is tall and wide enough."""
    v = np.asarray(values, dtype=np.float64)
    R, C = v.shape
    if cell is not None:
        cw = ch = cell
    else:
        cw = cell_size(1, C, smallest=10 if cols is not None and C <= 64 else 3)
        ch = cell_size(R, 1, smallest=10 if rows is not None and R <= 64 else 3)
    lo, hi = _range(v, cmap, vmin, vmax)
    uri = render.data_uri(render.png(render.colour(v, cmap, lo, hi)))
    image = _img(uri, C * cw, R * ch, cls=img_cls, title=title)
    row_html = ("<div class='rows'>" + "".join(f"<span style='height:{ch}px;line-height:{ch}px;font-size:"
                                                 f"{min(11, ch)}px' title='{e(r)}'>{e(r)}</span>" for r in rows)
                + "</div>") if rows is not None and ch >= 6 else "<div></div>"
    col_html = "<div></div>"
    if cols is not None and cw >= 6:
        size = min(11, cw)
        across = max(len(c) for c in cols) * size * 0.62 <= cw  # short labels fit the cell: written across
        style = ("writing-mode:horizontal-tb;transform:none;text-align:center" if across
                 else f"line-height:{cw}px")
        col_html = ("<div class='cols'>" + "".join(f"<span style='width:{cw}px;font-size:{size}px;{style}' "
                                                     f"title='{e(c)}'>{e(c)}</span>" for c in cols) + "</div>")
    grid = f"<div class='hm'><div></div>{col_html}{row_html}{image}</div>"
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{grid}{legend(cmap, lo, hi, legend_label, relative)}{cap}</figure>"


def picture(rgb: np.ndarray, *, scale: int = 1, caption: str = "", title: str = "", pixelated: bool = True) -> str:
    """An (H, W, 3) uint8 image, shown ``scale`` times its size; returns a ``<figure>``."""
    H, W = rgb.shape[:2]
    img = _img(render.data_uri(render.png(rgb)), W * scale, H * scale, cls="px" if pixelated else "",
               title=title or caption)
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{img}{cap}</figure>"


def png_picture(png_bytes: bytes, *, caption: str = "") -> str:
    """A PNG (a chart) at its own size; returns a ``<figure>``."""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure><img src='{render.data_uri(png_bytes)}' alt='chart'>{cap}</figure>"


def picture_grid(items: Iterable[tuple[np.ndarray, str]], *, size: int = 64, columns: int = 8,
                 caption: str = "") -> str:
    """Small images (H, W, 3) uint8, each ``size`` pixels wide, with a label under each, in a grid."""
    cells = []
    for rgb, label in items:
        H, W = rgb.shape[:2]
        h = max(1, round(size * H / W))
        cells.append(f"<figure style='margin:0'>{_img(render.data_uri(render.png(rgb)), size, h, title=label)}"
                     f"<figcaption style='font-size:11px;margin:0'>{e(label)}</figcaption></figure>")
    grid = (f"<div style='display:grid;grid-template-columns:repeat({columns}, {size}px);gap:6px 6px'>"
            + "".join(cells) + "</div>")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{grid}{cap}</figure>"


def table(header: Sequence[str], rows: Iterable[Sequence], *, numeric: Iterable[int] = (),
          row_classes: Sequence[str] | None = None, raw: Iterable[int] = ()) -> str:
    """An HTML table; cells in the ``numeric`` columns align right, ``raw`` columns are HTML already."""
    numeric, raw = set(numeric), set(raw)
    head = "".join(f"<th class='{'num' if i in numeric else ''}'>{e(str(h))}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cls = f" class='{row_classes[r]}'" if row_classes else ""
        cells = "".join(f"<td class='{'num' if i in numeric else ''}'>{c if i in raw else e(str(c))}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table class='data'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def bars(items: Iterable[tuple[str, float, str]], *, highest: float | None = None,
         classes: Sequence[str] | None = None) -> str:
    """Horizontal bars: (label, value >= 0, text shown after the bar); widths relative to ``highest``."""
    items = list(items)
    top = highest if highest is not None else max([v for _, v, _ in items] + [1e-12])
    out = []
    for i, (label, value, text) in enumerate(items):
        w = 0.0 if top <= 0 else max(0.0, min(100.0, 100.0 * value / top))
        cls = f" {classes[i]}" if classes else ""
        out.append(f"<span class='mono'>{e(label)}</span><div class='track'><div class='fill{cls}' "
                   f"style='width:{w:.1f}%'></div></div><span>{e(text)}</span>")
    return f"<div class='bars'>{''.join(out)}</div>"


def tokens_coloured(tokens: Sequence[str], values: Sequence[float | None], *, cmap: str = "viridis",
                    vmin: float = 0.0, vmax: float = 1.0, titles: Sequence[str] | None = None) -> str:
    """Tokens in boxes whose background shows a value in [vmin, vmax] (None: no colour)."""
    spans = []
    for i, (tok, v) in enumerate(zip(tokens, values)):
        style = ""
        if v is not None:
            r, g, b = render.colour(np.array([[v]]), cmap, vmin, vmax)[0, 0]
            light = 0.299 * r + 0.587 * g + 0.114 * b > 140
            style = f" style='background:rgb({r},{g},{b});color:{'#000' if light else '#fff'}'"
        title = f" title='{e(titles[i])}'" if titles else ""
        spans.append(f"<span{style}{title}>{e(tok)}</span>")
    return f"<div class='tokens'>{''.join(spans)}</div>"


def explorer(maps: Sequence[tuple[str, str, np.ndarray]], *, columns: Sequence[str], rows: Sequence[str],
             row_labels: Sequence[str] | None, col_labels: Sequence[str] | None, first: int = 0,
             cmap: str = "viridis", caption: str = "") -> str:
    """Many maps of one shape (e.g. every layer and head) as clickable thumbnails, and one at full size.

    ``maps``: (row name, column name, values >= 0) in row-major order over ``rows`` x ``columns``;
    ``row_labels``/``col_labels`` label the cells of the large map (tokens); ``first`` is shown first.
    Each map is scaled from 0 to its own largest value, which its title gives.
    """
    R, C = maps[first][2].shape
    big = cell_size(R, C, target=440, smallest=11 if max(R, C) <= 64 else 4, largest=36)
    thumb = cell_size(R, C, target=76, smallest=1, largest=8)
    tops = [float(v.max()) if float(v.max()) > 0 else 1.0 for _, _, v in maps]
    uris = [render.data_uri(render.png(render.colour(v, cmap, 0.0, top))) for (_, _, v), top in zip(maps, tops)]
    names = [f"{r}, {c} (largest weight {top:.2f})" for (r, c, _), top in zip(maps, tops)]
    head = "<div></div>" + "".join(f"<div class='colhead'>{e(c)}</div>" for c in columns)
    grid = [head]
    for r in rows:
        grid.append(f"<div class='rowhead'>{e(r)}</div>")
        for c in columns:
            k = next(i for i, (rr, cc, _) in enumerate(maps) if rr == r and cc == c)
            on = " on" if k == first else ""
            grid.append(f"<button class='thumb{on}' data-title='{e(names[k])}'>"
                        f"{_img(uris[k], C * thumb, R * thumb, title=names[k])}</button>")
    thumbs = (f"<div class='thumbs' style='grid-template-columns:max-content repeat({len(columns)}, max-content)'>"
              + "".join(grid) + "</div>")
    detail = heatmap(maps[first][2], rows=row_labels, cols=col_labels, cmap=cmap, vmin=0.0,
                     vmax=tops[first], cell=big, img_cls="px detail", legend_label="of the map's largest weight",
                     relative=True)
    cap = f"<p class='note'>{caption}</p>" if caption else ""
    return (f"<div class='explorer' data-explorer><div class='flex'><div><h3 class='detail-title'>{e(names[first])}"
            f"</h3>{detail}</div><div><h3>Every layer and head (click one)</h3>{thumbs}</div></div>{cap}</div>")


def sampling_widget(tokens: Sequence[str], logits: Sequence[float], *, vocab: int, rest: float,
                    show: int = 12) -> str:
    """Sliders for temperature, top-k and top-p over next-token ``logits``; bars of what can be drawn."""
    data = json.dumps({"tokens": [e(t) for t in tokens], "logits": [round(float(x), 4) for x in logits],
                       "vocab": vocab, "rest": rest, "show": show})
    data = data.replace("</", "<\\/")  # never closes the script element
    return (f"<div class='sampling' data-sampling><script type='application/json'>{data}</script>"
            "<p><label>temperature <input type='range' name='temperature' min='-1' max='0.7' step='0.01' "
            "value='0'> <output name='t'>1.00</output></label>"
            f"<label>top-k <input type='range' name='top_k' min='0' max='{min(len(logits), 50)}' step='1' "
            "value='0'> <output name='k'>off</output></label>"
            "<label>top-p <input type='range' name='top_p' min='0.05' max='1' step='0.01' value='1'> "
            "<output name='p'>off</output></label></p>"
            "<p class='sampling-info muted'></p><div class='bars'></div></div>")


class Section:
    """One ``<section>`` of the page; its parts are HTML strings, added in order."""

    def __init__(self, id: str, title: str, intro: str = ""):
        self.id, self.title, self.parts = id, title, []
        if intro:
            self.parts.append(f"<p class='intro'>{intro}</p>")

    def add(self, fragment: str) -> "Section":
        self.parts.append(fragment)
        return self

    def h3(self, text: str) -> "Section":
        return self.add(f"<h3>{e(text)}</h3>")

    def p(self, text: str, cls: str = "") -> "Section":
        """A paragraph of HTML (escape what came from outside with ``e``)."""
        return self.add(f"<p class='{cls}'>{text}</p>" if cls else f"<p>{text}</p>")

    def note(self, text: str) -> "Section":
        return self.p(text, "note")

    def html(self) -> str:
        return f"<section class='explain' id='{e(self.id)}'><h2>{e(self.title)}</h2>{''.join(self.parts)}</section>"


class Page:
    """A page of sections under a header; ``render()`` gives the HTML document."""

    def __init__(self, title: str, subtitle_lines: Sequence[str] = (), warning: str = ""):
        self.title, self.subtitle_lines, self.warning = title, list(subtitle_lines), warning
        self.sections: list[Section] = []

    def section(self, id: str, title: str, intro: str = "") -> Section:
        s = Section(id, title, intro)
        self.sections.append(s)
        return s

    @property
    def section_ids(self) -> list[str]:
        return [s.id for s in self.sections]

    def render(self) -> str:
        toc = "".join(f"<a href='#{e(s.id)}'>{e(s.title)}</a>" for s in self.sections)
        lines = "".join(f"<p>{line}</p>" for line in self.subtitle_lines)
        warn = f"<p class='warn'>{e(self.warning)}</p>" if self.warning else ""
        body = "".join(s.html() for s in self.sections)
        return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                f"<title>{e(self.title)}</title><link rel='icon' href='data:,'><style>{CSS}</style></head><body>"
                f"<header class='page'><h1>{e(self.title)}</h1>{lines}{warn}</header>"
                f"<nav class='toc'>{toc}</nav><main>{body}</main><script>{SCRIPT}</script></body></html>")

    def write(self, path: str | Path) -> Path:
        from archlab.utils.io import write_text_atomic

        path = Path(path)
        write_text_atomic(path, self.render())
        return path
