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


def test_bad_choice_exits_2(cli):
    r = cli("list", "--family", "nope")
    assert r.returncode == 2 and "invalid choice" in r.stderr
