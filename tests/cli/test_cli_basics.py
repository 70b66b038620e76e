import archlab


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
