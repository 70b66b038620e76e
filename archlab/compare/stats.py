"""Repeats as evidence: the mean of a cell's seeds, its 95% interval, and who (if anyone) wins a row.

A cell run with seeds s_1..s_N gives values x_1..x_N. The table shows their mean and the
Student-t 95% confidence interval of the mean,

    x_bar = 1/N sum_i x_i,    s^2 = 1/(N-1) sum_i (x_i - x_bar)^2,
    x_bar -/+ t_{0.975, N-1} * s / sqrt(N),

which assumes the seeds' values scatter normally around the cell's true mean; with N = 3 the
factor t_{0.975, 2} = 4.30 makes the interval wide, as it should be with three draws.

A row's winner is the cell with the best mean *whose interval clears the runner-up's* (they do
not overlap); otherwise the best cells tie. With one seed there is no interval, so there is no
clear winner either: the best value is named, and said to be a single draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from archlab.errors import check


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    check(df >= 1, f"a t-quantile needs df >= 1, got {df}")
    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Summary:
    mean: float
    low: float | None   # the 95% interval of the mean; None with one value
    high: float | None
    n: int

    @property
    def ci95(self) -> list[float] | None:
        return None if self.low is None else [self.low, self.high]


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean and t-interval of the mean of ``values`` (non-finite values are refused: a diverged seed
    must be reported as such, not averaged)."""
    values = [float(v) for v in values]
    check(len(values) > 0, "summarize needs at least one value, got none")
    check(all(math.isfinite(v) for v in values), f"summarize needs finite values, got {values}")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(mean, None, None, 1)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return Summary(mean, mean - half, mean + half, n)


def clears(a: Summary, b: Summary, higher_is_better: bool) -> bool:
    """Whether ``a``'s interval lies wholly on the better side of ``b``'s (no overlap)."""
    if a.low is None or b.low is None:
        return False
    return a.low > b.high if higher_is_better else a.high < b.low


def ranking(summaries: dict[str, Summary], higher_is_better: bool) -> tuple[list[str], str | None]:
    """(names best first, the clear winner or None).

    The winner is the best mean when its interval clears the second best's; None when they overlap
    (a tie), when there is one value per cell (no interval) or fewer than two cells."""
    order = sorted(summaries, key=lambda k: summaries[k].mean, reverse=higher_is_better)
    if len(order) < 2:
        return order, None
    best, second = summaries[order[0]], summaries[order[1]]
    return order, order[0] if clears(best, second, higher_is_better) else None


def tied_with_best(summaries: dict[str, Summary], higher_is_better: bool) -> list[str]:
    """The cells whose interval overlaps the best mean's interval (the best included), best first."""
    order, _ = ranking(summaries, higher_is_better)
    if not order:
        return []
    best = summaries[order[0]]
    return [order[0]] + [k for k in order[1:] if not clears(best, summaries[k], higher_is_better)]
