"""``archlab experiment``: list, one experiment end to end (tiny protocol), bad input exits 2."""

from __future__ import annotations

import json


def test_list_names_every_experiment_with_its_texts(cli):
    r = cli("experiment", "list")
    assert r.returncode == 0, r.stderr
    for name in ("long_memory", "parallelism", "weight_sharing", "residual_depth", "batchnorm_lr", "dropout",
                 "positional_encoding", "causal_mask"):
        assert name in r.stdout
    assert "seed 003" in r.stdout and "min" in r.stdout


def test_one_experiment_prints_table_criterion_verdict_and_writes_its_files(cli, tmp_path):
    out, js = tmp_path / "run", tmp_path / "result.json"
    r = cli("experiment", "causal_mask", "--size", "tiny", "--out", str(out), "--json", str(js), "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "criterion:" in r.stdout and "verdict: the claim" in r.stdout and "teacher-forced loss" in r.stdout
    assert "[1/2] causal-seed0" in r.stderr  # progress, one line per training run
    record = json.loads(js.read_text())
    assert record["name"] == "causal_mask" and isinstance(record["holds"], bool) and record["seeds"] == 1
    assert (out / "report.html").is_file() and (out / "result.json").is_file()
    # The saved measurement judged again, without training: the same verdict.
    again = cli("experiment", "causal_mask", "--from", str(out))
    assert again.returncode == 0, again.stderr
    assert "judged again" in again.stdout and ("HOLDS" if record["holds"] else "DOES NOT HOLD") in again.stdout
    wrong = cli("experiment", "dropout", "--from", str(out))
    assert wrong.returncode == 2 and "holds experiment 'causal_mask', not 'dropout'" in wrong.stderr


def test_bad_input_exits_2_with_one_line(cli, tmp_path):
    r = cli("experiment", "dropuot")
    assert r.returncode == 2 and "did you mean 'dropout'" in r.stderr and "Traceback" not in r.stderr
    r = cli("experiment", "dropout", "--seeds", "0")
    assert r.returncode == 2 and "--seeds must be >= 1, got 0" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    r = cli("experiment", "dropout", "--out", str(tmp_path / "full"))
    assert r.returncode == 2 and "is not an empty directory" in r.stderr
    r = cli("experiment", "dropout", "--quick", "--size", "full")
    assert r.returncode == 2 and "--quick contradicts --size full" in r.stderr
