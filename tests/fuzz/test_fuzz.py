"""Hundreds of bad inputs to the command line and the Python API: every one is refused clearly.

The cases are data (``cases.yaml``; the runner and what each outcome means are in ``harness.py``).
Each must end ``clear`` -- a one-line error naming what was wrong, exit status 2, or a
``ValueError``/``TypeError`` from the API -- never a traceback, a silently wrong result or a hang.
``test_counts`` prints the tally of the whole list. Run the list alone with
``python -m pytest tests/fuzz -q -s``.
"""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from tests.fuzz.harness import OUTCOMES, Case, run_case

CASES = [Case.from_dict(d) for d in yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())]
RESULTS: dict[str, str] = {}

TEXT = "\n".join(
    f"The {w} reads a sequence one step at a time and keeps a state of what it has seen so far."
    for w in ("network", "model", "layer", "cell", "decoder", "encoder", "reader", "student") * 12
) + "\n"
PAIRS = "\n".join(f"{a} {b}\t{b} {a}" for a in ("red", "green", "blue", "grey", "black") for b in
                  ("cat", "dog", "bird", "fish", "fox", "owl")) + "\n"
LABELS = "\n".join(f"{w} {w}\t{'long' if len(w) > 4 else 'short'}" for w in
                   ("cat", "horse", "dog", "zebra", "owl", "tiger", "eel", "camel", "yak", "llama",
                    "ant", "mouse", "bee", "snake", "emu", "whale", "cod", "shark", "pig", "sheep")) + "\n"


class _Payload:
    """A pickle that would leave a marker file if it were ever unpickled without weights_only."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _train(out: Path, *args: str) -> Path:
    from archlab.cli import main

    assert main(["train", *args, "--out", str(out), "--max-steps", "2", "--set", "log_every=1"]) == 0, out
    return out


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("fuzz-fixtures")
    (root / "text.txt").write_text(TEXT)
    (root / "pairs.tsv").write_text(PAIRS)
    (root / "labels.tsv").write_text(LABELS)
    (root / "series.csv").write_text("date,value\n" + "".join(f"2000-{m:02d}-01,{m * 1.5}\n" for m in range(1, 13))
                                     + "".join(f"2001-{m:02d}-01,{m * 1.7}\n" for m in range(1, 13)))
    hf = root / "hf_pickle"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 50, "n_positions": 16, "n_embd": 8, '
                                    '"n_layer": 1, "n_head": 2}')
    with open(hf / "pytorch_model.bin", "wb") as f:
        pickle.dump({"wte.weight": _Payload(str(root / "PAYLOAD_RAN"))}, f)
    made = {
        "text": root / "text.txt", "pairs": root / "pairs.tsv", "labels": root / "labels.tsv",
        "series": root / "series.csv", "hf_pickle": hf,
        "lm_run": _train(root / "lm_run", "--task", "lm", "--model", "gpt", "--data", str(root / "text.txt"),
                         "--set", "n_layer=1", "--set", "n_head=2", "--set", "d_model=16", "--set", "block_size=16",
                         "--set", "batch_size=4"),
        "clf_run": _train(root / "clf_run", "--task", "classify", "--model", "mlp", "--set", "hidden=8",
                          "--set", "batch_size=8", "--save-every", "1"),
        "fc_run": _train(root / "fc_run", "--task", "forecast", "--model", "mlp_forecaster",
                         "--set", "batch_size=8", "--set", "context_length=12", "--set", "horizon=3"),
        "s2s_run": _train(root / "s2s_run", "--task", "seq2seq", "--model", "seq2seq_rnn", "--data",
                          str(root / "pairs.tsv"), "--set", "batch_size=4", "--set", "hidden_size=8",
                          "--set", "embed_dim=8"),
        "tc_run": _train(root / "tc_run", "--task", "textclass", "--model", "rnn_classifier", "--data",
                         str(root / "labels.tsv"), "--set", "batch_size=4", "--set", "hidden_size=8",
                         "--set", "val_fraction=0.2", "--set", "test_fraction=0.2"),
    }
    yield made
    assert not (root / "PAYLOAD_RAN").exists(), "a pickle payload ran"
    torch.set_num_threads(torch_threads)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ARCHLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_case(case, fixtures, tmp_path):
    outcome, detail = run_case(case, tmp_path, fixtures)
    RESULTS[case.id] = outcome
    assert outcome == "clear", f"{case.id}: {outcome}\n{detail}"


def test_counts():
    """The tally of the cases that ran (this test runs after them): every one clear; the list
    holds at least 300 bad inputs."""
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert len(CASES) >= 300
    if not RESULTS:
        pytest.skip("no case ran")
    counts = collections.Counter(RESULTS.values())
    ran = [c for c in CASES if c.id in RESULTS]
    print(f"\nfuzz outcomes of {len(ran)} of {len(CASES)} cases ({sum(c.cli is not None for c in ran)} CLI, "
          f"{sum(c.api is not None for c in ran)} API): " + ", ".join(f"{o} {counts.get(o, 0)}" for o in OUTCOMES))
    assert counts["clear"] == len(RESULTS), counts


