"""`archlab report RUN_DIR`: one self-contained page per run, with curves, metrics, settings and the
task's pictures, for every kind of task the bake-off trains."""

from __future__ import annotations

import re

import pytest

from archlab.errors import ConfigError
from archlab.inspect.report import headline_metric, read_run, run_report, write_run_report
from archlab.train import RunSpec, train

FAST = {"log_every": 5, "lr": 3e-3, "keep_last": 1}


def _train(tmp_path, name, task, model, data, **settings):
    out = tmp_path / name
    train(RunSpec(task=task, model=model, data=data, out=out, settings={**FAST, **settings}))
    return out


def _images(page: str) -> int:
    return len(re.findall(r"src='data:image/png;base64,[A-Za-z0-9+/=]{200,}'", page))


def test_a_classifier_run_page_has_curves_metrics_confusion_and_settings(tmp_path, one_thread):
    out = _train(tmp_path, "digits", "classify", "mlp", "digits", hidden="32", batch_size=32, max_steps=30,
                 eval_every=10)
    data = read_run(out)
    assert [r["step"] for r in data["val"]] == [10, 20, 30] and [r["step"] for r in data["test"]] == [30]
    assert headline_metric("classify", data["val"]) == "accuracy"
    path = write_run_report(out)
    assert path == out / "report.html"
    page = path.read_text()
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    assert _images(page) == 3  # curves, confusion matrix, misclassified digits
    test_accuracy = data["test"][-1]["accuracy"]
    assert f"Test accuracy: <b>{100 * test_accuracy:.1f}%</b>" in page  # accuracy as a percentage
    assert "Confusion matrix (test split, 359 examples)" in page and "Misclassified test images" in page
    assert "<td>hidden</td><td><code>[32]</code></td>" in page and "<td>val_fraction</td>" in page


def test_a_run_that_kept_earlier_weights_says_so_and_shows_their_validation(tmp_path, one_thread):
    # A warm-up towards lr 3: the digits are learnt, then forgotten; the run keeps the early weights.
    out = _train(tmp_path, "kept", "classify", "mlp", "digits", hidden="32", batch_size=32, max_steps=40,
                 eval_every=5, lr=3.0, warmup_steps=300, select_metric="loss")
    data = read_run(out)
    kept = data["selected"][-1]
    assert kept["selected_step"] < 40 and kept["select_metric"] == "loss"
    best = min(data["val"], key=lambda r: r["loss"])
    assert kept["selected_step"] == best["step"] and kept["accuracy"] == pytest.approx(best["accuracy"])
    page = run_report(out)
    assert f"with the weights of step {kept['selected_step']}, the best validation loss" in page
    # The final metrics table shows the kept weights' validation figures, not the last step's.
    assert f"{100 * kept['accuracy']:.1f}%" in page.split("Final metrics")[1]


def test_forecast_and_g2p_pages_show_their_predictions(tmp_path, one_thread):
    series = _train(tmp_path, "co2", "forecast", "mlp_forecaster", "co2", max_steps=20, eval_every=10)
    page = run_report(series)
    assert "Forecast of the test part" in page and _images(page) == 2
    assert "Test rmse:" in page

    g2p = _train(tmp_path, "g2p", "seq2seq", "seq2seq_rnn", "cmudict", cell="gru", embed_dim=16, hidden_size=32,
                 train_words=300, val_words=20, eval_words=20, batch_size=32, max_steps=10, eval_every=5)
    page = run_report(g2p)
    assert "Test wer:" in page and "Test examples" in page
    assert "class='tokens'" in page and "<b class='bad'" in page  # an untrained model's phonemes, marked wrong


def test_a_language_model_page_shows_generations(tmp_path, one_thread):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 80)
    out = _train(tmp_path, "lm", "lm", "gpt", str(text), n_layer=1, n_head=2, d_model=32, block_size=32,
                 batch_size=8, max_steps=10, eval_every=5)
    page = run_report(out)
    assert "Generations from prompts of the test text" in page and "perplexity" in page
    assert page.count("<tr><td class='tokens'>") == 3


def test_an_unfinished_run_still_gets_a_page_and_bad_input_is_refused(tmp_path, one_thread):
    out = _train(tmp_path, "digits", "classify", "mlp", "digits", hidden="16", batch_size=32, max_steps=10)
    (out / "task.json").unlink()  # as if the run had been stopped before its final model
    page = run_report(out)
    assert "No final model yet" in page and _images(page) == 1
    with pytest.raises(ConfigError, match="is not a directory"):
        run_report(tmp_path / "missing")
    with pytest.raises(ConfigError, match="holds no run.json"):
        run_report(tmp_path)


@pytest.mark.slow
def test_the_cli_writes_the_page_and_exits_2_on_a_non_run(cli, tmp_path):
    out = _train(tmp_path, "digits", "classify", "mlp", "digits", hidden="16", batch_size=32, max_steps=5)
    r = cli("report", str(out), "--out", str(tmp_path / "page.html"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "page.html") and (tmp_path / "page.html").stat().st_size > 10_000
    bad = cli("report", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and "is not a directory" in bad.stderr and "Traceback" not in bad.stderr
