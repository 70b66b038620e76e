import os
import subprocess
import sys

import pytest

import archlab
from tests.conftest import REPO


def test_version_and_help(cli):
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"archlab {archlab.__version__}"
    r = cli("--help")
    assert r.returncode == 0 and "list" in r.stdout


def test_list_shows_every_model(cli):
    r = cli("list")
    assert r.returncode == 0
    for name in archlab.list_models():
        assert name in r.stdout


def test_list_shows_what_trains_each_model_and_filters_by_task(cli):
    r = cli("list", "--task", "lm")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  ")}
    assert sorted(rows) == ["gpt", "gru_lm", "lstm_lm", "rnn_lm"] and " lm " in rows["gpt"]
    r = cli("list", "--family", "transformer")
    bert = next(line for line in r.stdout.splitlines() if line.split()[:1] == ["bert"])
    assert "mlm, textclass" in bert  # one model, two capabilities
    r = cli("list", "--task", "nope")
    assert r.returncode == 2 and "unknown task 'nope'" in r.stderr


def test_list_settings_shows_a_variants_own_defaults(cli):
    r = cli("list", "--settings", "vit_tiny")
    assert r.returncode == 0, r.stderr
    assert "image classifier" in r.stdout and "ViTConfig" in r.stdout
    fields = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines() if line.startswith("  ")}
    assert fields["image_size"] == "28" and fields["patch_size"] == "7"  # vit_tiny's, not the dataclass's 224/16
    r = cli("list", "--settings", "vit_tinyy")
    assert r.returncode == 2 and "did you mean vit_tiny" in r.stderr


def test_bad_choice_exits_2(cli):
    r = cli("list", "--family", "nope")
    assert r.returncode == 2 and "invalid choice" in r.stderr


# What each command imports before it answers, in a fresh interpreter: --help, --version and
# `list` must answer without torch (importing it takes seconds; these take a fraction of one).
NO_TORCH = """
import sys
from archlab.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("TORCH" if "torch" in sys.modules else "NO TORCH", file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["list"], ["list", "--family", "rnn"],
                                  ["list", "--task", "lm"]],
                         ids=" ".join)
def test_help_version_and_list_answer_without_importing_torch(argv):
    r = subprocess.run([sys.executable, "-c", NO_TORCH.format(argv=argv)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "printed nothing"
    assert r.stderr.strip().splitlines()[-1] == "NO TORCH"


def test_list_prints_what_the_live_registry_holds(cli):
    r = cli("list", "--family", "transformer")
    assert r.returncode == 0
    lines = r.stdout.splitlines()[1:]
    names = [line.split()[0] for line in lines]
    assert names == archlab.list_models("transformer")
    for name, line in zip(names, lines):
        entry = archlab.model_info(name)
        assert line.split(None, 1)[1].startswith(", ".join(entry.tasks)) and line.endswith(f"  {entry.description}")


def test_a_command_chosen_builds_its_full_parser_the_others_stay_listed(cli):
    r = cli("train", "--help")
    assert r.returncode == 0 and "--max-steps" in r.stdout and "lm" in r.stdout  # tasks listed
    r = cli("nosuchcommand")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "train" in r.stderr
