"""`archlab train` / `archlab evaluate` from the command line: recipes, bad input, signals."""

from __future__ import annotations

import hashlib
import signal

import pytest

import archlab
from archlab.cli import main
from tests.train.helpers import start_train

ARGS = ["--task", "classify", "--model", "mlp", "--data", "digits", "--set", "hidden=16", "--max-steps", "6"]


def snapshot(directory):
    """{relative path: sha256} of every file under ``directory``."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_train_from_a_recipe_then_evaluate(cli, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("task: classify\nmodel: mlp\ndata: digits\nhidden: [32]\nbatch_size: 32\nlr: 0.003\n"
                      "max_steps: 30\n")
    out = tmp_path / "run"
    r = cli("train", "--config", str(recipe), "--set", "lr=0.005", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "step 30/30" in r.stderr  # plain progress lines when stderr is not a terminal
    printed = dict(line.split() for line in r.stdout.splitlines())
    assert set(printed) == {"loss", "accuracy"} and float(printed["accuracy"]) > 0.5
    run = (out / "run.json").read_text()
    assert '"lr": 0.005' in run  # --set wins over the recipe
    assert archlab.from_pretrained(out).config.hidden == (32,)

    e = cli("evaluate", "--checkpoint", str(out), "--batch-size", "32")
    assert e.returncode == 0, e.stderr
    assert e.stdout == r.stdout  # the same metrics, printed the same way
    t = cli("evaluate", "--checkpoint", str(out), "--split", "train")
    assert t.returncode == 0, t.stderr
    on_train = dict(line.split() for line in t.stdout.splitlines())
    assert set(on_train) == {"loss", "accuracy"} and on_train["loss"] != printed["loss"]  # the images trained on

    # Bad input: an existing run without --resume is refused and left untouched.
    before = snapshot(out)
    assert main(["train", *ARGS, "--out", str(out)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert snapshot(out) == before


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    cases = [
        (["--set", "n_layer=2"], "unknown key(s) n_layer; valid keys are trainer: batch_size"),
        (["--set", "batch_size=many"], "batch_size takes an integer, got 'many'"),
        (["--set", "lr"], "--set takes key=value, got 'lr'"),
        (["--data", str(tmp_path / "missing")], "missing' does not exist (expected a folder with one subfolder per class"),
        (["--config", str(tmp_path / "nope.yaml")], "is not a readable file"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--set", "optimizer=muon", "--set", "ns_steps=0"], "ns_steps must be >= 1, got 0"),
    ]
    for extra, message in cases:
        assert main(["train", *ARGS, *extra, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_resume_refuses_another_model_and_skips_a_corrupted_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--save-every", "2", "--out", str(out)]) == 0
    assert main(["train", *ARGS, "--set", "hidden=8", "--out", str(out), "--resume"]) == 2
    assert "holds a different run; model_overrides" in capsys.readouterr().err
    # Truncate the newest checkpoint's weights: resume names it and falls back to the one before.
    newest = out / "checkpoints" / "step-00000006"
    w = newest / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    assert main(["train", *ARGS, "--max-steps", "8", "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "step-00000006' is corrupted: model.safetensors has 100 bytes" in err
    assert "resumed from" in err and "step-00000004 (step 4)" in err
    # Evaluating a damaged checkpoint is a clear error, exit 2.
    w = out / "checkpoints" / "step-00000008" / "model.safetensors"
    w.write_bytes(b"x" + w.read_bytes()[1:])
    assert main(["evaluate", "--checkpoint", str(w.parent)]) == 2
    assert "fails its SHA-256 check" in capsys.readouterr().err
    # --overwrite starts over: the run's own files go, a file of the user's stays.
    (out / "notes.txt").write_text("mine")
    assert main(["train", *ARGS, "--out", str(out), "--overwrite"]) == 0
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000006"]
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143)])
def test_signal_writes_a_checkpoint_before_exiting(tmp_path, sig, code):
    out = tmp_path / "run"
    proc = start_train([*ARGS, "--max-steps", "100000", "--set", "log_every=1", "--out", str(out)])
    for line in proc.stderr:
        if line.startswith("step 5/"):
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "checkpoint written at step" in err
    saved = sorted((out / "checkpoints").iterdir())
    assert len(saved) == 1 and int(saved[0].name.split("-")[1]) >= 5


def test_a_language_model_trains_offline_with_one_summary_and_the_metrics_once(tmp_path, capsys):
    # No --data: the task's default text ships with Python, so this works without a network.
    out = tmp_path / "gpt"
    assert main(["train", "--task", "lm", "--model", "gpt", "--set", "n_layer=1", "--set", "n_head=2",
                 "--set", "d_model=16", "--set", "block_size=16", "--set", "batch_size=8", "--set", "log_every=2",
                 "--set", "eval_batches=20", "--max-steps", "4", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    summary = [line for line in err if line.startswith("train gpt (")]
    assert len(summary) == 1, err
    for part in ("parameters) on task lm", "data pythondocs (train ", "tokens, val ", "tokens, test ", "cpu, ",
                 "threads, fp32; 4 steps of 8 (", f"writing to {out}"):
        assert part in summary[0], (part, summary[0])
    progress = [line for line in err if line.startswith("step ")]
    assert [p.split(" | ")[:2] for p in progress][-1][0] == "step 4/4" and all(" | epoch 0.0" in p for p in progress)
    assert sum(line.startswith("done: step 4") for line in err) == 1
    assert [line.split()[0] for line in captured.out.splitlines()] == ["loss", "perplexity", "bpc"]


# A run that does not compile never imports torch's compiler (torch._dynamo): importing it takes
# about as long as importing torch, before the first step. Checked in a fresh interpreter.
NO_COMPILER = """
import sys
from archlab.cli import main
code = main({argv!r})
print("exit", code, "COMPILER" if "torch._dynamo" in sys.modules else "NO COMPILER")
"""


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "muon"])
def test_a_training_run_does_not_import_the_compiler(tmp_path, optimizer):
    import subprocess
    import sys

    from tests.conftest import REPO

    argv = ["train", *ARGS, "--set", f"optimizer={optimizer}", "--threads", "1", "--out", str(tmp_path / "run")]
    r = subprocess.run([sys.executable, "-c", NO_COMPILER.format(argv=argv)], capture_output=True, text=True,
                       timeout=300, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert r.stdout.strip().splitlines()[-1] == "exit 0 NO COMPILER", r.stderr[-2000:]
