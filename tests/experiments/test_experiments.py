"""Every experiment on its tiny protocol (seconds), and every verdict recomputed from edited measurements.

The tiny runs prove the whole path -- the trainer's runs, the measurement, the table, the plot,
result.json and report.html -- not the claims (a few steps cannot show them). The verdict tests
take a tiny run's real measurement, change the numbers that matter to a world where the claim
holds and to one where it does not, and check that the verdict follows the numbers.
"""

from __future__ import annotations

import json

import pytest

from archlab.experiments import get_experiment, run_experiment
from archlab.experiments.core import restore

ALL = ["long_memory", "parallelism", "weight_sharing", "residual_depth", "batchnorm_lr", "dropout",
       "positional_encoding", "causal_mask"]
SLOW = {"residual_depth", "weight_sharing"}  # 56-layer networks; the 5,000 MNIST digits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    done = {}

    def run(name):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            done[name] = (run_experiment(name, out, size="tiny", seeds=1, log=lambda text: None), out)
        return done[name]

    return run


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ALL])
def test_tiny_protocol_writes_the_whole_result(tiny, name):
    result, out = tiny(name)
    record = json.loads((out / "result.json").read_text())
    assert {"name", "claim", "source", "criterion", "holds", "table", "seeds"} <= set(record)
    assert record["name"] == name and record["seeds"] == 1 and record["size"] == "tiny"
    assert record["holds"] == result.holds == all(c["holds"] for c in record["checks"]) and record["checks"]
    assert len(record["table"]) >= 2 and "measurement" in record
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and result.claim.split()[0] in page
    assert ("HOLDS" if result.holds else "DOES NOT HOLD") in page
    assert (out / "runs").is_dir() or name == "parallelism"  # every trained model is an ordinary run directory


def _verdict(tiny, name, edit) -> bool:
    """The verdict of ``name`` on its tiny measurement after ``edit(measurement, protocol)``."""
    result, out = tiny(name)
    experiment = get_experiment(name)
    p = experiment.protocol("tiny")
    m = restore(json.loads((out / "result.json").read_text())["measurement"])
    edit(m, p)
    return experiment.conclude(m, p, size="tiny", seeds=1, seconds=0.0).holds


def test_long_memory_verdict_follows_the_accuracies(tiny):
    def world(rnn_long):
        def edit(m, p):
            acc = m["accuracy"]
            acc["lstm"][-1], acc["gru"][-1], acc["rnn"][0], acc["rnn"][-1] = [0.99], [0.97], [1.0], [rnn_long]
        return edit
    assert _verdict(tiny, "long_memory", world(0.26))
    assert not _verdict(tiny, "long_memory", world(0.66))   # the RNN still remembers at the longest gap


def test_parallelism_verdict_follows_the_step_times(tiny):
    def world(lstm_seconds):
        def edit(m, p):
            m["step_seconds"]["transformer"] = [[[0.01] for _ in m["lengths"]]]  # [threads][lengths][seeds]
            m["step_seconds"]["lstm"] = [[[s] for s in lstm_seconds]]
        return edit
    assert _verdict(tiny, "parallelism", world([0.05, 0.05]))
    assert not _verdict(tiny, "parallelism", world([0.05, 0.005]))  # the LSTM wins at the longer length


@pytest.mark.slow
def test_weight_sharing_verdict_follows_the_shifted_accuracies(tiny):
    def world(cnn, mlp):
        def edit(m, p):
            m["accuracy"]["cnn"], m["accuracy"]["mlp"] = [[a] for a in cnn], [[a] for a in mlp]
        return edit
    assert _verdict(tiny, "weight_sharing", world([0.98, 0.90], [0.97, 0.50]))
    assert not _verdict(tiny, "weight_sharing", world([0.98, 0.50], [0.97, 0.90]))


@pytest.mark.slow
def test_residual_depth_verdict_follows_the_losses(tiny):
    def world(plain56):
        def edit(m, p):
            m["train_loss"].update(plain20=[0.10], plain56=[plain56], resnet20=[0.05], resnet56=[0.03])
            m["test_accuracy"].update(plain56=[0.90], resnet56=[0.98])
        return edit
    assert _verdict(tiny, "residual_depth", world(0.50))
    assert not _verdict(tiny, "residual_depth", world(0.08))  # the deeper plain net trains better: no degradation
    assert _verdict(tiny, "residual_depth", world(float("inf")))  # diverged: the worst possible training loss


def test_batchnorm_verdict_follows_the_largest_rate_that_trains(tiny):
    def world(plain_at_large_lr):
        def edit(m, p):
            m["accuracy"]["bn"] = [[0.95], [0.95]]
            m["accuracy"]["plain"] = [[0.95], [plain_at_large_lr]]
        return edit
    assert _verdict(tiny, "batchnorm_lr", world(0.10))
    assert not _verdict(tiny, "batchnorm_lr", world(0.95))


def test_dropout_verdict_follows_the_gap_and_the_test_accuracy(tiny):
    def world(test_with_dropout):
        def edit(m, p):
            m["train_accuracy"].update(none=[1.0], dropout=[0.97])
            m["test_accuracy"].update(none=[0.85], dropout=[test_with_dropout])
        return edit
    assert _verdict(tiny, "dropout", world(0.88))
    assert not _verdict(tiny, "dropout", world(0.84))  # a smaller gap, but a worse test accuracy


def test_positional_encoding_verdict_follows_accuracy_and_symmetry(tiny):
    def world(acc_none, perm_none):
        def edit(m, p):
            m["accuracy"].update(none=[acc_none], sinusoidal=[0.99])
            m["permutation_error"].update(none=[perm_none], sinusoidal=[0.5])
        return edit
    assert _verdict(tiny, "positional_encoding", world(0.50, 1e-15))
    assert not _verdict(tiny, "positional_encoding", world(0.90, 1e-15))
    assert not _verdict(tiny, "positional_encoding", world(0.50, 1e-3))


def test_causal_mask_verdict_follows_the_losses(tiny):
    def world(generation_open):
        def edit(m, p):
            m["future_change"].update(causal=[0.0], open=[0.3])
            m["teacher_forced_loss"].update(causal=[2.0], open=[0.1])
            m["generation_loss"].update(causal=[2.0], open=[generation_open])
        return edit
    assert _verdict(tiny, "causal_mask", world(4.0))
    assert not _verdict(tiny, "causal_mask", world(1.9))
