"""`archlab generate`: text from a language model trained in the test, reproducible, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import sklearn
import torch

import archlab
from archlab.cli import main
from archlab.data import load_tokenizer
from archlab.train import RunSpec, train

MODELS = {
    "gpt": {"n_layer": 1, "n_head": 2, "d_model": 32},
    "lstm_lm": {"embed_dim": 16, "hidden_size": 32, "num_layers": 1, "dropout": 0.0},
}
PROMPT = "The data set"


pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """A tiny GPT and a tiny LSTM trained for 40 steps on scikit-learn's data set descriptions."""
    root = tmp_path_factory.mktemp("lm")
    descr = sorted((Path(sklearn.__file__).parent / "datasets" / "descr").glob("*.rst"))
    prose = root / "prose.txt"
    prose.write_text("\n".join(p.read_text(encoding="utf-8") for p in descr), encoding="utf-8")
    for model, sizes in MODELS.items():
        settings = {**sizes, "block_size": 32, "batch_size": 16, "lr": 1e-2, "max_steps": 40, "log_every": 40}
        train(RunSpec(task="lm", model=model, data=str(prose), out=root / model, settings=settings))
    return root


def generate(capsys, run, *args) -> str:
    assert main(["generate", "--checkpoint", str(run), "--device", "cpu", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("model", list(MODELS))
def test_the_same_seed_gives_the_same_text(runs, capsys, model):
    args = ["--prompt", PROMPT, "--max-new-tokens", "50", "--temperature", "0.8", "--top-k", "10"]
    first = generate(capsys, runs / model, *args, "--seed", "1")
    assert first.startswith(PROMPT) and first.endswith("\n")
    continuation = first[len(PROMPT):-1]
    tok = load_tokenizer(runs / model)
    assert len(tok.encode(continuation)) == 50  # one character per token
    assert generate(capsys, runs / model, *args, "--seed", "1") == first
    assert generate(capsys, runs / model, *args, "--seed", "2") != first
    nucleus = ["--prompt", PROMPT, "--max-new-tokens", "30", "--top-p", "0.9", "--seed", "1"]
    assert generate(capsys, runs / model, *nucleus) == generate(capsys, runs / model, *nucleus)


@pytest.mark.parametrize("model", list(MODELS))
def test_greedy_takes_the_most_likely_character_every_time(runs, capsys, model):
    text = generate(capsys, runs / model, "--prompt", PROMPT, "--max-new-tokens", "20", "--greedy", "--seed", "1")
    assert text == generate(capsys, runs / model, "--prompt", PROMPT, "--max-new-tokens", "20", "--greedy",
                            "--seed", "2")  # no randomness at all
    # By hand: feed the whole text so far, append the argmax, 20 times.
    net, tok = archlab.from_pretrained(runs / model).eval(), load_tokenizer(runs / model)
    ids = tok.encode(PROMPT)
    with torch.no_grad():
        for _ in range(20):
            logits = net(torch.tensor([ids]))
            logits = logits[0] if isinstance(logits, tuple) else logits
            ids.append(int(logits[0, -1].argmax()))
    assert text == tok.decode(ids) + "\n"


def test_generate_runs_as_a_command(runs, cli):
    r = cli("generate", "--checkpoint", str(runs / "gpt"), "--prompt", "Iris", "--max-new-tokens", "30",
            "--seed", "3", "--device", "cpu", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Iris") and len(r.stdout) == len("Iris") + 30 + 1


def test_bad_input_exits_2(runs, tmp_path, capsys):
    gpt = str(runs / "gpt")
    cases = [
        (["--checkpoint", gpt, "--prompt", "Data\u2603 set\u00e9"],
         "--prompt has characters the model was not trained on: '\u00e9', '\u2603'; it knows the"),
        (["--checkpoint", gpt, "--prompt", "x" * 33], "--prompt is 33 tokens long, the model reads at most block_size=32"),
        (["--checkpoint", gpt, "--temperature", "0"], "--temperature must be a finite number > 0, got 0.0"),
        (["--checkpoint", gpt, "--top-p", "1.5"], "--top-p must be in (0, 1], got 1.5"),
        (["--checkpoint", gpt, "--top-k", "0"], "--top-k must be >= 1, got 0"),
        (["--checkpoint", gpt, "--max-new-tokens", "-1"], "--max-new-tokens must be in [0, 100,000], got -1"),
        (["--checkpoint", str(tmp_path / "missing")], "missing' does not exist"),
        (["--checkpoint", str(tmp_path)], "has no task.json: it was not written by `archlab train`"),
    ]
    for args, message in cases:
        assert main(["generate", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    # A model of another task cannot write.
    clf = tmp_path / "clf"
    train(RunSpec(task="classify", model="mlp", data="digits", out=clf, settings={"hidden": "8", "max_steps": 2}))
    assert main(["generate", "--checkpoint", str(clf)]) == 2
    assert "holds a model of task 'classify'; generating text needs a language model (task 'lm')" in \
        capsys.readouterr().err
