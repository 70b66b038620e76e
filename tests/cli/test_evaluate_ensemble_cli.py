"""`archlab evaluate` and `archlab translate` with several --checkpoint: the runs' ensemble, as one model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from archlab.cli import main
from archlab.models.ensemble import Seq2SeqEnsemble
from archlab.tasks.seq2seq import SYMBOLS_FILE
from archlab.train import RunSpec, evaluate, train
from archlab.train.checkpointing import MANIFEST_FILE
from archlab.train.evaluation import load_for_evaluation

G2P = {"cell": "gru", "embed_dim": 32, "hidden_size": 64, "dropout": 0.0, "train_words": 1000, "eval_words": 120,
       "batch_size": 64, "lr": 5e-3, "max_steps": 40, "log_every": 20}

pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


@pytest.fixture(scope="module")
def g2p_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    for seed in (0, 1):
        train(RunSpec(task="seq2seq", model="seq2seq_rnn", data="cmudict", out=root / f"s{seed}",
                      settings={**G2P, "seed": seed}))
    return root / "s0", root / "s1"


def evaluated(capsys, *args) -> dict:
    assert main(["evaluate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_two_g2p_runs_are_scored_on_their_averaged_distribution(g2p_runs, capsys):
    a, b = g2p_runs
    got = evaluated(capsys, "--checkpoint", str(a), "--checkpoint", str(b), "--set", "beam_size=3")
    # By hand: the ensemble's beam-of-3 pronunciations, and its teacher-forced loss on the first references.
    (ma, task), (mb, _) = load_for_evaluation(a), load_for_evaluation(b)
    ensemble = Seq2SeqEnsemble([ma.eval(), mb.eval()])
    words = [word for word, _ in task.held("test")]
    said = task.translate(ensemble, words, beam_size=3)
    wrong = sum(tuple(p.split()) not in refs for p, refs in zip(said, task.refs))
    assert got["eval_count"] == 120 and got["wer"] == pytest.approx(wrong / 120)
    loss_sum, tokens = 0.0, 0
    with torch.no_grad():
        for src, tgt, _, _ in task.eval_batches(64):
            losses, n = ensemble.token_losses(src, tgt)
            loss_sum, tokens = loss_sum + float(losses.sum()), tokens + int(n)
    assert got["loss"] == pytest.approx(loss_sum / tokens, rel=1e-6)
    # archlab translate decodes with the same ensemble.
    assert main(["translate", "--checkpoint", str(a), "--checkpoint", str(b), "--beam", "3", *words[:4]]) == 0
    printed = [line.split("  ") for line in capsys.readouterr().out.splitlines()]
    assert printed == [[w, p] for w, p in zip(words[:4], said[:4])]
    # Each member alone differs, and one --checkpoint is the plain evaluation.
    alone = [evaluated(capsys, "--checkpoint", str(run), "--set", "beam_size=3") for run in (a, b)]
    assert alone[0] == pytest.approx(evaluate(a, task_settings={"beam_size": 3}))
    assert all(single["loss"] != pytest.approx(got["loss"]) for single in alone)


def test_runs_that_cannot_be_averaged_exit_2_naming_why(g2p_runs, tiny_run, tmp_path, capsys):
    a, _ = g2p_runs
    no_stress = tmp_path / "nostress"
    train(RunSpec(task="seq2seq", model="seq2seq_rnn", data="cmudict", out=no_stress,
                  settings={**G2P, "max_steps": 2, "stress": False}))
    assert main(["evaluate", "--checkpoint", str(a), "--checkpoint", str(no_stress)]) == 2
    assert "member 2 (Seq2SeqRNN) has tgt_vocab_size=42, member 1 (Seq2SeqRNN) has tgt_vocab_size=72" in \
        capsys.readouterr().err
    # Same vocabulary size, other symbols: a copy of run b with two phonemes swapped in its symbol
    # table (and without the manifest that would refuse the edited file first).
    _, b = g2p_runs
    swapped = tmp_path / "swapped"
    shutil.copytree(b, swapped)
    (swapped / MANIFEST_FILE).unlink()
    symbols = json.loads((swapped / SYMBOLS_FILE).read_text())
    tokens = symbols["target"]["tokens"]
    tokens[3], tokens[4] = tokens[4], tokens[3]
    (swapped / SYMBOLS_FILE).write_text(json.dumps(symbols))
    assert main(["evaluate", "--checkpoint", str(a), "--checkpoint", str(swapped)]) == 2
    assert f"{str(swapped / SYMBOLS_FILE)!r} differs from {str(a / SYMBOLS_FILE)!r}" in capsys.readouterr().err
    digits = tmp_path / "digits"
    train(RunSpec(task="classify", model="mlp", data="digits", out=digits,
                  settings={"hidden": "8", "max_steps": 2, "log_every": 1}))
    assert main(["evaluate", "--checkpoint", str(a), "--checkpoint", str(digits)]) == 2
    assert f"{str(digits)!r} was trained for task 'classify'" in capsys.readouterr().err
    # Language models share a task but are not averaged (only encoder-decoders and image classifiers).
    assert main(["evaluate", "--checkpoint", str(tiny_run("gpt")), "--checkpoint", str(tiny_run("lstm_lm"))]) == 2
    assert "cannot average GPT, " in capsys.readouterr().err


def test_two_digit_classifiers_average_their_probabilities(tmp_path, capsys):
    runs = []
    for seed in (0, 1):
        out = tmp_path / f"mlp{seed}"
        train(RunSpec(task="classify", model="mlp", data="digits", out=out,
                      settings={"hidden": "32", "max_steps": 30, "log_every": 10, "seed": seed}))
        runs.append(out)
    got = evaluated(capsys, "--checkpoint", str(runs[0]), "--checkpoint", str(runs[1]))
    (m0, task), (m1, _) = load_for_evaluation(runs[0]), load_for_evaluation(runs[1])
    correct = count = 0
    with torch.no_grad():
        for x, y in task.eval_batches(64):
            p = (m0.eval()(x).softmax(-1) + m1.eval()(x).softmax(-1)) / 2
            correct, count = correct + int((p.argmax(-1) == y).sum()), count + len(y)
    assert got["accuracy"] == pytest.approx(correct / count)
