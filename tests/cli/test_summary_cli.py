"""`archlab summary MODEL`: one model of each family, and bad input exits 2 with a message."""

from __future__ import annotations

import pytest

from archlab.cli import main


def test_lenet5_from_the_command_line(cli):
    r = cli("summary", "lenet5", "--depth", "1", env={"OMP_NUM_THREADS": "1"})  # one small image
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "lenet5 (cnn), input image (1, 1, 32, 32)"
    assert any(line.startswith("  features: Sequential") and "(1, 120, 1, 1)" in line for line in lines)
    assert not any("Conv2d" in line for line in lines)  # depth 1: the blocks, not their layers
    assert "Total params:          61,706" in r.stdout
    assert "Forward FLOPs:         833,040" in r.stdout


@pytest.mark.parametrize("args,first_line,expect", [
    (["rnn_classifier", "--set", "cell=gru", "--set", "hidden_size=16", "--seq-len", "7"],
     "rnn_classifier (rnn), input sequence (1, 7, 28)", ["rnn: GRU", "(1, 7, 16)"]),
    (["gpt", "--set", "n_layer=1", "--set", "d_model=16", "--set", "n_head=2", "--set", "block_size=32",
      "--batch-size", "2"],
     "gpt (transformer), input tokens (2, 32)", ["lm_head: Linear", "tied to wte"]),
    (["mlp", "--set", "hidden=32", "--input-size", "4,784"],
     "mlp (mlp), input vector (4, 784)", [f"Forward FLOPs:         {2 * 4 * (784 * 32 + 32 * 10):,}"]),
])
def test_one_model_of_each_other_family(capsys, args, first_line, expect):
    assert main(["summary", *args]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == first_line
    for text in expect:
        assert text in out


def test_bad_input_exits_2_with_the_reason(capsys):
    cases = [
        (["resnet19"], "unknown model 'resnet19'; did you mean resnet18"),
        (["lenet5", "--input-size", "1,1,28,28"], "lenet5 expects input of shape (B, 1, 32, 32), got (1, 1, 28, 28)"),
        (["gpt", "--set", "n_layer=1", "--seq-len", "300"], "GPT expects at most block_size=256 positions, got 300"),
        (["lenet5", "--set", "width=3"], "unknown key(s) width; valid keys are model: activation"),
        (["lenet5", "--input-size", "1,x"], "--input-size takes positive integers"),
        (["mlp", "--seq-len", "5"], "--seq-len is for sequence models"),
        (["lenet5", "--depth", "-1"], "--depth must be >= 0, got -1"),
    ]
    for args, message in cases:
        assert main(["summary", *args]) == 2, args
        assert message in capsys.readouterr().err, args
