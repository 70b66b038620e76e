"""An LSTM reads the rows of a digit as a sequence: rnn_classifier through the classify task."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab.errors import ConfigError
from archlab.tasks.classify import ClassifyConfig, ClassifyTask
from archlab.train import RunSpec, train
from archlab.registry import model_config, model_info


def test_the_data_fixes_the_row_width_of_sequence_models():
    task = ClassifyTask(ClassifyConfig(), "digits")  # (1, 8, 8) images
    rnn = model_info("rnn_classifier").model_class
    assert task.model_fields(rnn, model_config("rnn_classifier")) == {"num_classes": 10, "input_size": 1 * 8,
                                                                      "vocab_size": 0}  # C * W
    lenet = model_info("lenet5").model_class  # LeNet's input_size is an image side, not a row
    assert task.model_fields(lenet, model_config("lenet5"))["input_size"] == 8


def test_an_lstm_reading_rows_learns_the_digits(tmp_path, one_thread):
    out = tmp_path / "run"
    settings = {"cell": "lstm", "hidden_size": 64, "batch_size": 64, "max_steps": 150, "lr": 1e-2, "log_every": 1000}
    result = train(RunSpec(task="classify", model="rnn_classifier", data="digits", out=out, settings=settings))
    # Measured: 0.955 (seed 0; 0.964 and 0.961 with seeds 1 and 2), chance is 0.1.
    assert result["metrics"]["accuracy"] > 0.90, result["metrics"]
    model = archlab.from_pretrained(out).eval()
    assert model.config.input_size == 8 and model.config.vocab_size == 0

    # The model reads an image (B, C, H, W) as H steps of C * W features: the same as rows by hand.
    task = ClassifyTask(ClassifyConfig(), "digits")
    images, _ = next(task.eval_batches(16))                                          # (16, 1, 8, 8)
    rows = torch.stack([torch.stack([img[:, r, :].flatten() for r in range(8)]) for img in images])  # (16, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(images), model(rows))
    # A width the data does not have is refused before training.
    with pytest.raises(ConfigError, match=r"input_size is fixed by the data \(input_size=8\), got input_size=28"):
        train(RunSpec(task="classify", model="rnn_classifier", data="digits", out=tmp_path / "other",
                      settings={**settings, "input_size": 28}))
