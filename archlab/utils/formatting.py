"""One number format per metric, the same in every table, report and log line.

    rates       accuracy, error rates, F1 (fractions)  ->  "98.2%"   (a percentage, one decimal)
    counts      examples, steps, words                  ->  "12,000"  (an integer)
    BLEU        already 0-100                           ->  "27.4"
    the rest    losses, RMSE, perplexity ...            ->  "0.184"   (three significant decimals,
                                                                       fewer digits for large values)

An interval is written as its half-width in the metric's own unit: "98.2% ±0.3", "0.184 ±0.012".
"""

from __future__ import annotations

import math

PERCENT = {"accuracy", "wer", "per", "wer_nostress", "per_nostress", "macro_f1", "val_accuracy", "mfu"}
COUNTS = {"eval_count", "count", "words", "steps", "n_test", "n_wrong", "params"}
ONE_DECIMAL = {"bleu"}


def _kind(name: str) -> str:
    base = name.removeprefix("val_").removeprefix("test_")
    if name in PERCENT or base in PERCENT:
        return "percent"
    if name in COUNTS or base in COUNTS:
        return "count"
    if base in ONE_DECIMAL:
        return "one"
    return "plain"


def format_metric(name: str, value: float | None) -> str:
    """``value`` of metric ``name`` in that metric's one format; "-" when missing or not finite."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    kind = _kind(name)
    if kind == "percent":
        return f"{100 * value:.1f}%"
    if kind == "count":
        return f"{int(round(value)):,}"
    if kind == "one":
        return f"{value:.1f}"
    return _plain(value)


def _plain(value: float) -> str:
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_interval(name: str, mean: float | None, half_width: float | None) -> str:
    """``mean`` and the half-width of its interval: "98.2% ±0.3" (percentage points), "0.184 ±0.012"."""
    text = format_metric(name, mean)
    if half_width is None or text == "-" or not math.isfinite(half_width):
        return text
    if _kind(name) == "percent":
        return f"{text} ±{100 * half_width:.1f}"
    if _kind(name) == "count":
        return f"{text} ±{int(round(half_width)):,}"
    return f"{text} ±{_plain(half_width)}"


def format_count(n: float) -> str:
    """A parameter count: 950 -> "950", 61,706 -> "61.7k", 1,234,567 -> "1.23M"."""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(int(n))


def format_duration(seconds: float) -> str:
    """A wall time for people: "4m05s", or "1h02m03s" from an hour on (rounded to the second, never
    negative)."""
    seconds = max(0, int(round(seconds)))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
