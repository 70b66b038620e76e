"""`archlab translate`: a trained G2P checkpoint turns words into phonemes; bad input exits 2."""

from __future__ import annotations

import io

import pytest

from archlab.cli import main
from archlab.train import RunSpec, train
from archlab.train.evaluation import load_for_evaluation

TINY = {"d_model": 64, "nhead": 4, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 128,
        "dropout": 0.0, "train_words": 1000, "eval_words": 50, "batch_size": 64, "lr": 3e-3, "max_steps": 40,
        "log_every": 20}


pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("g2p") / "run"
    train(RunSpec(task="seq2seq", model="transformer", data="cmudict", out=out, settings=TINY))
    return out


def printed(text: str) -> list[tuple[str, list[str]]]:
    """(input, phonemes) of each printed line: the input, two spaces, the translation."""
    rows = []
    for line in text.splitlines():
        word, sep, output = line.partition("  ")
        assert sep, f"expected 'INPUT  OUTPUT', got {line!r}"
        rows.append((word, output.split()))
    return rows


@pytest.mark.slow  # a fresh process: imports and the dictionary, about 10 s on 2 cores
def test_translate_words_from_the_command_line(cli, checkpoint):
    r = cli("translate", "--checkpoint", str(checkpoint), "archlab", "tomato", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    rows = printed(r.stdout)
    assert [w for w, _ in rows] == ["archlab", "tomato"]
    model, task = load_for_evaluation(checkpoint)
    phoneme_set = set(task.target.tokens[3:])
    assert all(p and set(p) <= phoneme_set for _, p in rows), rows
    # The same phonemes as the task's own translate() of the saved model.
    assert [" ".join(p) for _, p in rows] == task.translate(model.eval(), ["archlab", "tomato"])


def test_translate_reads_stdin_and_beam_search(checkpoint, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Zebra\n\nquick\n"))
    assert main(["translate", "--checkpoint", str(checkpoint), "--beam", "3"]) == 0
    rows = printed(capsys.readouterr().out)
    assert [w for w, _ in rows] == ["Zebra", "quick"] and all(p for _, p in rows)


def test_bad_input_exits_2_naming_the_problem(checkpoint, tmp_path, capsys):
    cases = [
        (["café"], "'café': the character 'é' is not in the model's source alphabet ('abcdefghijklmnopqrstuvwxyz)"),
        (["r2d2"], "the character '2' is not in the model's source alphabet"),
        (["--beam", "0", "word"], "--beam must be >= 1, got 0"),
        (["a" * 40], "has 40 source tokens, the model was trained with max_len=28"),
    ]
    for args, message in cases:
        assert main(["translate", "--checkpoint", str(checkpoint), *args]) == 2
        assert message in capsys.readouterr().err
    assert main(["translate", "--checkpoint", str(tmp_path / "nowhere"), "word"]) == 2
    assert "nowhere' does not exist" in capsys.readouterr().err
    classifier = tmp_path / "digits"
    train(RunSpec(task="classify", model="mlp", data="digits", out=classifier,
                  settings={"hidden": "8", "max_steps": 2, "log_every": 1}))
    assert main(["translate", "--checkpoint", str(classifier), "word"]) == 2
    assert "holds a model of task 'classify'; archlab translate needs one trained with --task seq2seq" in \
        capsys.readouterr().err
