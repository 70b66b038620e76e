"""The shared core: intervals over seeds, checks judged on intervals, tables, the verdict."""

from __future__ import annotations

import math

import pytest

from archlab.errors import ConfigError
from archlab.experiments import Check, Column, estimate, get_experiment, list_experiments
from archlab.experiments.core import t_quantile, table_text

ALL = ["long_memory", "parallelism", "weight_sharing", "residual_depth", "batchnorm_lr", "dropout",
       "positional_encoding", "causal_mask"]


def test_every_claim_of_the_texts_is_an_experiment_in_order():
    assert list_experiments() == ALL
    for name in ALL:
        e = get_experiment(name)
        assert e.claim and e.source and e.reference and e.criterion and e.texts
        assert set(e.texts) <= {"000", "001", "002", "003"}
        assert e.seconds[0] < e.seconds[1]


def test_unknown_experiment_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown experiment 'dropuot'.*did you mean 'dropout'"):
        get_experiment("dropuot")


def test_interval_is_the_student_t_interval_of_the_mean():
    e = estimate([1.0, 2.0, 3.0])  # mean 2, sample sd 1
    assert e.mean == 2.0
    assert e.half_width == pytest.approx(4.303 / math.sqrt(3), abs=1e-12)
    assert (e.low, e.high) == pytest.approx((2.0 - 4.303 / math.sqrt(3), 2.0 + 4.303 / math.sqrt(3)))
    assert estimate([5.0]).half_width == 0.0  # one seed: no interval
    assert t_quantile(1) == 12.706 and t_quantile(30) == 2.042
    assert abs(t_quantile(60) - 2.000) < 0.002 and abs(t_quantile(120) - 1.980) < 0.002


def test_differences_are_paired_by_seed():
    a, b = estimate([1.0, 2.0, 3.0]), estimate([0.5, 1.5, 2.5])
    diff = a - b
    assert diff.values == (0.5, 0.5, 0.5) and diff.half_width == 0.0  # both arms moved together
    with pytest.raises(ConfigError, match="as many seeds"):
        a - estimate([1.0])


def test_a_check_needs_its_whole_interval_past_the_threshold():
    mean_clears = estimate([0.95, 0.99, 0.80])  # mean 0.913, interval reaches far below 0.9
    assert not Check("accuracy", mean_clears, ">=", 0.9).holds
    assert Check("accuracy", estimate([0.95, 0.96, 0.955]), ">=", 0.9).holds
    assert Check("error", estimate([0.01, 0.02]), "<", 0.5).holds
    assert not Check("error", estimate([0.1, 0.6]), "<", 0.5).holds  # mean 0.35 < 0.5, upper end is not
    assert Check("accuracy", estimate([0.91]), ">=", 0.9).holds      # one seed: the value itself
    assert not Check("loss", estimate([math.nan]), ">", 0.0).holds    # a diverged run never clears anything
    assert Check("loss gap", estimate([math.inf, 2.0]), ">", 0.0).holds
    assert "-> yes" in Check("accuracy", estimate([0.95]), ">=", 0.9, "%").describe()


def test_diverged_values_survive_json_and_come_back():
    import json

    from archlab.experiments.core import jsonable, restore

    m = {"loss": [math.inf, 0.5, math.nan], "nested": {"x": -math.inf}, "text": "inference"}
    text = json.dumps(jsonable(m), allow_nan=False)  # strict JSON
    back = restore(json.loads(text))
    assert back["loss"][0] == math.inf and back["loss"][1] == 0.5 and math.isnan(back["loss"][2])
    assert back["nested"]["x"] == -math.inf and back["text"] == "inference"
    assert jsonable(estimate([1.0, 3.0]))["ci95"] == pytest.approx([2 - 12.706, 2 + 12.706])


def test_table_text_formats_estimates_and_divergence():
    cols = [Column("name", "name"), Column("acc", "accuracy", "%"), Column("loss", "loss", "{:.2f}")]
    text = table_text(cols, [{"name": "a", "acc": estimate([0.5, 0.7]), "loss": math.nan},
                             {"name": "b", "acc": 0.25, "loss": 1.234}])
    lines = text.splitlines()
    assert lines[0].split() == ["name", "accuracy", "loss"]
    assert "60.0% ± 127.1%" in lines[2] and "diverged" in lines[2]
    assert lines[3].split() == ["b", "25.0%", "1.23"]
