"""``archlab demo`` trains a tiny GPT for a few seconds: the loss falls and it writes text."""

from __future__ import annotations

import re


def test_demo_trains_and_writes(cli):
    r = cli("demo", "--seconds", "2", "--max-new-tokens", "40", "--prompt", "The ", timeout=120)
    assert r.returncode == 0, r.stderr
    before, after = map(float, re.search(r"loss before: ([\d.]+)\s+after: ([\d.]+)", r.stdout).groups())
    assert after < before - 0.2, r.stdout  # two seconds of AdamW take it well below the starting loss
    # The continuations may hold newlines of their own (how many steps two seconds give varies).
    greedy = re.search(r"greedy:\n(.*)\n\nsampled \(temperature", r.stdout, re.S).group(1)
    sampled = re.search(r"sampled \(temperature 0.8, top-k 10\):\n(.*)\n\Z", r.stdout, re.S).group(1)
    for text in (greedy, sampled):
        assert text.startswith("The ") and len(text) == len("The ") + 40


def test_demo_rejects_bad_arguments(capsys):
    # In-process through the same entry point as `archlab` (a subprocess costs seconds of start-up).
    from archlab.cli import main

    assert main(["demo", "--seconds", "0"]) == 2
    assert "--seconds must be in (0, 3600], got 0.0" in capsys.readouterr().err
    assert main(["demo", "--prompt", "€"]) == 2
    err = capsys.readouterr().err
    assert "--prompt" in err and "'€'" in err
