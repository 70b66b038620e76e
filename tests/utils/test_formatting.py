"""One number format per metric: percentages for rates, integers for counts, the rest by size."""

from __future__ import annotations

import math

from archlab.utils.formatting import format_count, format_interval, format_metric


def test_each_kind_of_metric_has_one_format():
    assert format_metric("accuracy", 0.98234) == "98.2%" and format_metric("val_accuracy", 0.5) == "50.0%"
    assert format_metric("wer_nostress", 0.2391) == "23.9%" and format_metric("per", 0.07) == "7.0%"
    assert format_metric("eval_count", 12000.0) == "12,000" and format_metric("steps", 2.6) == "3"
    assert format_metric("bleu", 27.449) == "27.4"
    assert format_metric("rmse", 0.18412) == "0.184" and format_metric("rmse_1step", 17.221) == "17.22"
    assert format_metric("perplexity", 123.456) == "123.5" and format_metric("loss", 2345.6) == "2,346"
    for missing in (None, math.nan, math.inf):
        assert format_metric("accuracy", missing) == "-"


def test_intervals_are_half_widths_in_the_metrics_unit():
    assert format_interval("accuracy", 0.982, 0.0031) == "98.2% ±0.3"   # percentage points
    assert format_interval("rmse", 0.184, 0.0123) == "0.184 ±0.012"
    assert format_interval("rmse", 0.184, None) == "0.184"
    assert format_count(950) == "950" and format_count(61_706) == "61.7k" and format_count(1_234_567) == "1.23M"
