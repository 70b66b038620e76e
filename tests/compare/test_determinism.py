"""Fixed work gives the same table under any load: two runs of a small images plan with the same seed,
the second beside processes that keep every core busy (and on two worker processes instead of one),
print identical values."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

BUSY = "import time\nend = time.time() + 900\nwhile time.time() < end:\n    pass\n"


def _compare(cli, tmp_path, name, *extra):
    out = tmp_path / name
    r = cli("compare", "--only", "images", "--archs", "mlp,cnn", "--plan", "0.02", "--seed", "3",
            "--out", str(out), "--json", str(tmp_path / f"{name}.json"), *extra, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, json.loads((tmp_path / f"{name}.json").read_text())


@pytest.mark.slow
def test_the_same_seed_gives_the_same_table_beside_a_busy_cpu(cli, tmp_path):
    quiet, first = _compare(cli, tmp_path, "quiet", "--jobs", "1")
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        loaded, second = _compare(cli, tmp_path, "busy", "--jobs", "2")
    finally:
        for p in busy:
            p.kill()
            p.wait()
    results = [row["results"] for row in first["rows"]], [row["results"] for row in second["rows"]]
    values = [{arch: (r["values"], r["steps"], r["metrics"]) for arch, r in row.items()} for row in results[0]]
    assert values == [{arch: (r["values"], r["steps"], r["metrics"]) for arch, r in row.items()}
                      for row in results[1]]
    assert first["rows"][0]["baselines"] == second["rows"][0]["baselines"]
    assert values[0]["CNN"][1] == 40 and values[0]["MLP"][1] == 30  # the plan's steps x 0.02, not a clock's
    # The printed tables agree too, except for the timings.
    table = lambda out: [line for line in out.splitlines() if "accuracy" in line]  # noqa: E731
    assert table(quiet.stdout) == table(loaded.stdout) and table(quiet.stdout)
