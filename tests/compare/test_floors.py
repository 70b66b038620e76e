"""The bake-off's quality floors at the default budget, on the cells that carry them.

Each cell gets exactly the training time it gets in a full default ``archlab compare`` (a cell's
share of the budget does not depend on which others run), so this checks the default run's floors
in about two minutes instead of five:

    CNN on MNIST-5k                       accuracy >= 97%
    best recurrent model on CO2           24-month RMSE below the seasonal-naive forecast (2.07 ppm)
    Transformer on CMUdict G2P            word error rate (stress kept) <= 60%
"""

from __future__ import annotations

import pytest

from archlab.compare import run_compare, select_archs, select_rows
from archlab.compare.runner import parse_budget


@pytest.mark.slow
def test_the_default_budget_meets_the_floors(tmp_path):
    images, series, text = select_rows(["images", "series", "text"])
    cells = {"images": select_archs(images, ["CNN"]), "series": select_archs(series, ["RNN", "LSTM", "GRU"]),
             "text": select_archs(text, ["Transformer"])}
    result = run_compare([images, series, text], cells, parse_budget("5m"), tmp_path, log=print)
    assert result.complete, [c.error for r in result.rows for c in r.cells]
    by_row = {r.row.key: r for r in result.rows}

    cnn = by_row["images"].cells[0]
    assert cnn.value >= 0.97, f"CNN accuracy {cnn.value:.4f} on MNIST-5k after {cnn.steps} steps"

    seasonal = by_row["series"].baselines["seasonal_naive"]
    assert seasonal == pytest.approx(2.0665, abs=1e-3)  # the last year before the test part, repeated
    best = min(c.value for c in by_row["series"].cells)
    assert best < seasonal, f"best recurrent RMSE {best:.3f} vs seasonal naive {seasonal:.3f}"

    transformer = by_row["text"].cells[0]
    assert transformer.metrics["eval_count"] == 12_000  # the whole test split
    assert transformer.value <= 0.60, f"Transformer WER {transformer.value:.4f} after {transformer.steps} steps"
