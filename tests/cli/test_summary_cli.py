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


def test_a_run_directory_a_saved_model_and_json(tmp_path, capsys):
    import json

    from archlab.registry import create_model
    from archlab.train import RunSpec, train

    run = tmp_path / "run"
    train(RunSpec(task="classify", model="mlp", data="digits", out=run,
                  settings={"hidden": "16", "max_steps": 2, "batch_size": 8, "log_every": 1}))
    assert main(["summary", str(run), "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{run} (mlp, a trained run), input vector (1, 64)"
    assert f"Total params:          {64 * 16 + 16 + 16 * 10 + 10:,}" in out

    create_model("lenet5").save_pretrained(tmp_path / "saved")
    assert main(["summary", str(tmp_path / "saved"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["kind"], d["model"], d["total_params"]) == ("checkpoint", "lenet5", 61_706)
    assert d["input"] == {"kind": "image", "shapes": [[1, 1, 32, 32]]}
    assert [r["name"] for r in d["layers"]][:3] == ["", "features", "features.0"]

    assert main(["summary", "gpt", "--set", "n_layer=1", "--set", "block_size=8", "--json", str(tmp_path / "g.json")]) == 0
    layers = {r["name"]: r for r in json.loads((tmp_path / "g.json").read_text())["layers"]}
    assert layers["h.0.attn"]["calls"] == 1  # called through attend(), shown as called

    for args, message in [
        ([str(run), "--set", "hidden=8"], "is a saved model, whose config is fixed by its weights"),
        ([str(tmp_path / "nothing" / "x")], "does not exist"),
        ([str(tmp_path / "g.json")], "is a file; give a run directory"),
        ([str(tmp_path)], "is a directory but neither a run of `archlab train`"),
        (["lenet5", "--json", str(tmp_path / "no" / "x.json")], "the folder"),
    ]:
        assert main(["summary", *args]) == 2, args
        assert message in capsys.readouterr().err, args


def test_a_hugging_face_folder(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(tmp_path / "hf")
    assert main(["summary", str(tmp_path / "hf"), "--seq-len", "10", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{tmp_path / 'hf'} (bert, a Hugging Face folder), input tokens (1, 10)"
    assert "encoder.layers.1: TransformerEncoderLayer" in out
