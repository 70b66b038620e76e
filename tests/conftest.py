"""Shared test helpers. Tests mirror the package: tests/nn, tests/models, tests/data, tests/train, tests/cli."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Two cores: keep torch from oversubscribing them when several processes run.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny models: their kernels are too small to gain from a
    second thread, and on a machine busy with other work two threads that wait for each other make
    each step many times slower (measured here: 1.5 s instead of 2 ms for a tiny LSTM step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def run_cli(*args: str, cwd=None, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m archlab ARGS`` in a fresh process; returns the completed process (text)."""
    full_env = {**os.environ, **(env or {})}
    # The checkout under test wins over any installed copy.
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "archlab", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


# Tiny runs of every task, trained once per test session on first use (a few seconds each), for the
# tests of commands that read a run directory (archlab explain, its browser test).
TINY_RUNS = {
    "lenet": ("classify", "lenet5", "digits", {"input_size": 8, "activation": "relu", "pooling": "max",
                                               "batch_size": 32, "lr": 3e-3, "max_steps": 30}),
    "gpt": ("lm", "gpt", "prose", {"n_layer": 2, "n_head": 2, "d_model": 32, "block_size": 32, "batch_size": 16,
                                   "lr": 1e-2, "max_steps": 30}),
    "lstm_lm": ("lm", "lstm_lm", "prose", {"embed_dim": 16, "hidden_size": 32, "num_layers": 1, "dropout": 0.0,
                                           "block_size": 32, "batch_size": 16, "lr": 1e-2, "max_steps": 30}),
    "g2p_rnn": ("seq2seq", "seq2seq_rnn", "cmudict", {"cell": "lstm", "embed_dim": 16, "hidden_size": 32,
                                                      "dropout": 0.0, "train_words": 500, "eval_words": 20,
                                                      "batch_size": 32, "lr": 3e-3, "max_steps": 20}),
    "g2p_transformer": ("seq2seq", "transformer", "cmudict", {"d_model": 32, "nhead": 2, "num_encoder_layers": 1,
                                                              "num_decoder_layers": 1, "dim_feedforward": 64,
                                                              "dropout": 0.0, "train_words": 500, "eval_words": 20,
                                                              "batch_size": 32, "lr": 3e-3, "max_steps": 20}),
    "bert_textclass": ("textclass", "bert", None, {"hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                                   "intermediate_size": 64, "max_position_embeddings": 32,
                                                   "max_length": 24, "batch_size": 32, "lr": 1e-3, "max_steps": 20}),
    "bert_mlm": ("mlm", "bert", "prose", {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                                          "max_position_embeddings": 32, "block_size": 32, "batch_size": 16,
                                          "lr": 1e-3, "max_steps": 20}),
    "gru_forecaster": ("forecast", "gru_forecaster", "co2", {"batch_size": 32, "lr": 1e-2, "max_steps": 20}),
    "ft_transformer": ("tabular", "ft_transformer", "wine", {"d_token": 16, "num_layers": 1, "num_heads": 2,
                                                             "batch_size": 32, "lr": 3e-3, "max_steps": 20}),
    "lightgbm": ("tabular", "lightgbm", "wine", {"max_steps": 10}),
    "clip": ("clip", "clip_tiny", "digits", {"embed_dim": 32, "patch_size": 4, "vision_width": 32, "vision_layers": 2,
                                            "vision_heads": 2, "vision_mlp": 64, "text_width": 32, "text_layers": 1,
                                            "text_heads": 2, "text_mlp": 64, "batch_size": 32, "lr": 3e-3,
                                            "max_steps": 20}),
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``tiny_run(name)``: the run directory of ``TINY_RUNS[name]``, trained on first use.

    "prose" is scikit-learn's data set descriptions (real English, installed with the package)."""
    root = tmp_path_factory.mktemp("tiny_runs")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            import sklearn

            from archlab.train import RunSpec, train

            task, model, data, settings = TINY_RUNS[name]
            if data == "prose":
                data = root / "prose.txt"
                if not data.exists():
                    descr = sorted((Path(sklearn.__file__).parent / "datasets" / "descr").glob("*.rst"))
                    data.write_text("\n".join(p.read_text(encoding="utf-8") for p in descr), encoding="utf-8")
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                train(RunSpec(task=task, model=model, data=str(data) if data else None, out=root / name,
                              settings={**settings, "log_every": 1000}))
            finally:
                torch.set_num_threads(threads)
            made[name] = root / name
        return made[name]

    return get
