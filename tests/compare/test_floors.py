"""The bake-off's quality floors under the default plan, on the cells that carry them.

Each cell does exactly the work it does in a full default ``archlab compare`` (its steps and
evaluation sizes are fixed in the plan, whatever else runs), with seed 0 -- the first of the three
seeds whose means the README reports:

    CNN (LeNet-5) on MNIST-5k      test accuracy >= 98.0%
    CNN (causal 1-D) on CO2        24-month RMSE <= 0.25 ppm (SARIMA(1,1,1)(1,1,1)12: 0.41)
    Transformer on CMUdict G2P     word error rate with stress <= 50% on all 12,000 test words

Fixed work makes the figures exact on a given torch build: this run prints the same numbers on a
quiet or a busy machine, two cells at a time, in about four minutes on 2 cores.
"""

from __future__ import annotations

import pytest

from archlab.compare import PLANS, run_compare, select_archs, select_rows


@pytest.mark.slow
def test_the_default_plan_meets_the_floors(tmp_path):
    images, series, text = select_rows(["images", "series", "text"])
    cells = {"images": select_archs(images, ["CNN"]), "series": select_archs(series, ["CNN"]),
             "text": select_archs(text, ["Transformer"])}
    result = run_compare([images, series, text], cells, tmp_path, plan=PLANS["default"], seeds=[0], jobs=2,
                         log=print)
    assert result.complete, [c.error for r in result.rows for c in r.cells]
    by_row = {r.row.key: r for r in result.rows}

    cnn = by_row["images"].cells[0]
    assert cnn.steps == images.cells[1].steps
    assert cnn.value >= 0.98, f"CNN accuracy {cnn.value:.4f} on MNIST-5k after {cnn.steps} steps"
    assert 0.95 <= by_row["images"].baselines["svm"] < cnn.value  # the RBF SVM, C chosen on validation

    co2 = by_row["series"]
    assert co2.baselines["seasonal_naive"] == pytest.approx(2.0665, abs=1e-3)  # the last year repeated
    assert co2.baselines["sarima"] == pytest.approx(0.41, abs=0.01)
    assert co2.cells[0].value <= 0.25, f"CNN 24-month RMSE {co2.cells[0].value:.3f} on CO2"

    transformer = by_row["text"].cells[0]
    assert transformer.metric_means()["eval_count"] == 12_000  # the whole test split
    assert transformer.value <= 0.50, f"Transformer WER {transformer.value:.4f} after {transformer.steps} steps"
