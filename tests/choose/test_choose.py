"""`archlab choose`: the texts' answer on every offline data set and on user files of each kind, reasons
that cite what was measured, settings the trainer accepts, the rules as one table, the JSON schema,
the bake-off's evidence, and one-line errors for data it cannot use."""

from __future__ import annotations

import json

import pytest

from archlab.choose import NOTES, RULES, choose, profile, recommend
from archlab.choose.evidence import Evidence, Trial, pick_winner, trial_settings
from archlab.choose.choice import Choice
from archlab.choose.rules import FAMILIES, SIZERS
from archlab.cli import main
from archlab.registry import model_info
from archlab.train import RunSpec, resolve

pytestmark = pytest.mark.usefixtures("one_thread")

# The texts: images -> CNN, sequences -> LSTM/GRU, text -> Transformer, tables -> gradient boosting.
SHIPPED = [
    ("digits", "images", "classify", "cnn", "1,797 images of 8x8 pixels: a grid with local structure -> convolution "
                                            "shares weights across positions"),
    ("mnist5k", "images", "classify", "cnn", "5,000 images of 28x28 pixels: a grid with local structure"),
    ("co2", "series", "forecast", "lstm", "526 monthly values in time order (lag-1 autocorrelation 0.99)"),
    ("sunspots", "series", "forecast", "lstm", "309 yearly values in time order"),
    ("cmudict", "text-pairs", "seq2seq", "transformer", "124,926 pairs of sequences (7.5 -> 6.3 symbols)"),
    ("cmudict-syllables", "text-labels", "textclass", "transformer", "124,918 texts of 7.5 characters in 4 classes"),
    ("breast_cancer", "tabular", "tabular", "boosting", "569 rows x 30 numeric columns, no order between columns -> "
                                                        "gradient boosting"),
    ("wine", "tabular", "tabular", "boosting", "178 rows x 13 numeric columns, no order between columns"),
    ("diabetes", "tabular", "tabular", "boosting", "442 rows x 10 numeric columns, no order between columns"),
]


@pytest.mark.parametrize("name, kind, task, family, reason", SHIPPED, ids=[s[0] for s in SHIPPED])
def test_every_shipped_data_set_gets_the_texts_answer(name, kind, task, family, reason):
    c = choose(name)
    assert (c.profile.kind, c.profile.task, c.final.family) == (kind, task, family)
    assert c.rule.reasons[0].startswith(reason), c.rule.reasons[0]
    assert len(c.rule.runner_ups) >= 2 and all(r.family != family for r in c.rule.runner_ups)


USER = [
    ("images", {}, "images", "cnn", "resnet20", "24 images of 12x12 pixels"),
    ("tabular", {"target": "bought"}, "tabular", "boosting", "lightgbm",
     "60 rows x 2 numeric + 1 categorical columns, no order between columns"),
    ("series", {}, "series", "lstm", "lstm_forecaster", "120 monthly values in time order"),
    ("series-one-column", {}, "series", "lstm", "lstm_forecaster", "120 ordered values in time order"),
    ("text-pairs", {}, "text-pairs", "transformer", "transformer", "80 pairs of sequences (4.0 -> 5.0 words)"),
    ("text-labels", {}, "text-labels", "transformer", "bert", "80 texts of 6.0 words in 2 classes"),
    ("text-labels-csv", {}, "text-labels", "transformer", "bert", "80 texts of 6.0 words in 2 classes"),
    ("text", {}, "text", "transformer", "gpt", "10,747 characters of text"),
]


@pytest.mark.parametrize("which, kwargs, kind, family, model, reason", USER, ids=[u[0] for u in USER])
def test_user_files_of_each_kind(user_files, which, kwargs, kind, family, model, reason):
    c = choose(str(user_files[which]), **kwargs)
    assert (c.profile.kind, c.final.family, c.final.model) == (kind, family, model)
    assert c.rule.reasons[0].startswith(reason), c.rule.reasons[0]
    # Every candidate's settings are accepted by the trainer as they are (model, trainer and task keys).
    for cand in c.rule.candidates:
        settings = trial_settings(c.profile, cand, seed=0)
        r = resolve(RunSpec(task=c.profile.task, model=cand.model, data=c.profile.data, out=user_files[which].parent,
                            settings=settings))
        assert type(r.model.config).__name__.endswith("Config")


def test_a_forced_task_and_notes_that_cite_measured_properties(user_files):
    c = choose(str(user_files["tabular"]), target="bought")
    assert any(n.startswith("7 missing cells (3.9%) in 1 column(s)") for n in c.rule.notes), c.rule.notes
    assert any(n.startswith("1 categorical column(s), up to 3 values") for n in c.rule.notes)
    assert c.final.settings["target"] == "bought"
    # The one numeric column of a series, read as a table instead: --task overrides the guess.
    forced = choose(str(user_files["series"]), task="tabular", target="sales")
    assert forced.profile.kind == "tabular" and forced.final.model == "lightgbm"


def test_the_rules_are_one_table_of_registered_models_with_sizers():
    registry_family = {"cnn": "cnn", "vit": "transformer", "mlp": "mlp", "rnn": "rnn", "lstm": "rnn", "gru": "rnn",
                       "transformer": "transformer", "boosting": "boosting"}
    for rule in RULES:
        assert rule.family in FAMILIES
        assert model_info(rule.model).family == registry_family[rule.family], rule
        assert (rule.kind, rule.model) in SIZERS, rule
    kinds = {r.kind for r in RULES}
    assert kinds == {"images", "series", "tabular", "text-pairs", "text-labels", "text"}
    for kind in kinds:  # the texts' answer ranks first for each kind
        first = min((r for r in RULES if r.kind == kind), key=lambda r: r.rank)
        assert first.family == {"images": "cnn", "series": "lstm", "tabular": "boosting"}.get(kind, "transformer")
    assert {n.kind for n in NOTES} <= kinds


def test_large_or_odd_images_get_another_cnn_and_no_vit_when_not_square():
    from archlab.choose.profile import Profile

    base = {"n_images": 50_000, "n_train": 40_000, "n_test": 10_000, "height": 224, "width": 224, "channels": 3,
            "colour": "colour", "square": True, "side": 224, "pixels": 150_528, "classes": 100, "smallest_class": 500,
            "largest_class": 500}
    big = recommend(Profile("x", "images", "classify", base))
    assert big.recommended.model == "resnet18" and big.runner_ups[0].settings["patch_size"] == 16
    assert not any("little data for a ViT" in n for n in big.notes)
    wide = recommend(Profile("x", "images", "classify", {**base, "width": 300, "square": False, "side": 300}))
    assert "vit" not in [c.family for c in wide.candidates]


def test_json_has_exactly_the_issues_schema(user_files, tmp_path):
    out = tmp_path / "choice.json"
    assert main(["choose", str(user_files["series"]), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data) == ["data", "kind", "task", "recommended", "candidates", "reasons", "evidence"]
    assert data["kind"] == "series" and data["task"] == "forecast" and data["evidence"] is None
    assert set(data["recommended"]) == {"family", "model", "settings"}
    assert data["recommended"]["settings"]["value_column"] == "sales"
    assert data["recommended"]["settings"]["date_column"] == "month"
    assert all(set(c) == {"family", "model"} for c in data["candidates"]) and len(data["candidates"]) == 4
    assert all(c["family"] in FAMILIES for c in [data["recommended"], *data["candidates"]])
    assert all(isinstance(r, str) for r in data["reasons"]) and "lag-1 autocorrelation" in data["reasons"][0]


def test_the_evidence_runs_the_top_three_and_judges(user_files, tmp_path, capsys):
    out = tmp_path / "choice.json"
    assert main(["choose", str(user_files["tabular"]), "--target", "bought", "--evidence", "--json", str(out),
                 "--out", str(tmp_path / "runs")]) == 0
    printed = capsys.readouterr().out
    assert "customers.csv (validation)" in printed and "Boosting" in printed and "the evidence " in printed
    ev = json.loads(out.read_text())["evidence"]
    assert [r["model"] for r in ev["results"]] == ["lightgbm", "tabular_mlp", "ft_transformer"]
    assert ev["metric"] == "accuracy" and ev["split"] == "validation" and isinstance(ev["agrees"], bool)
    assert all(r["value"] is not None and 0 <= r["value"] <= 1 and r["steps"] > 0 for r in ev["results"])
    assert (tmp_path / "runs" / "1-lightgbm-boosting" / "model.txt").is_file()
    # The trees ran their fixed rounds without early stopping on the rows that judge them.
    run = json.loads((tmp_path / "runs" / "1-lightgbm-boosting" / "run.json").read_text())
    assert run["model_overrides"]["early_stopping_rounds"] == 0
    # The evidence is the validation rows' score, not the test rows'.
    records = [json.loads(line) for line in
               (tmp_path / "runs" / "1-lightgbm-boosting" / "metrics.jsonl").read_text().splitlines()]
    val = next(r for r in records if r.get("split") == "val")
    assert ev["results"][0]["value"] == pytest.approx(val["accuracy"])


def test_when_the_evidence_disagrees_the_winner_is_recommended(user_files):
    c = choose(str(user_files["tabular"]), target="bought")
    rule, mlp, ft = c.rule.candidates
    trials = [Trial(rule, 0.80, {"accuracy": 0.80, "log_loss": 0.4}), Trial(mlp, 0.90, {"accuracy": 0.9}),
              Trial(ft, 0.85, {"accuracy": 0.85})]
    disagreeing = Choice(c.profile, c.rule, Evidence("accuracy", True, trials, mlp, False, 1.0))
    data = disagreeing.to_json()
    assert data["recommended"]["model"] == "tabular_mlp" and data["evidence"]["rule"]["model"] == "lightgbm"
    assert [x["model"] for x in data["candidates"]] == ["lightgbm", "ft_transformer"]
    assert data["reasons"][-1] == ("the evidence disagrees: tabular_mlp (mlp) has the best validation accuracy 90.0%, "
                                   "lightgbm 80.0%; on this data, use tabular_mlp")


def test_the_winner_is_strictly_better_or_the_rule_keeps_it(user_files):
    rule, mlp, ft = choose(str(user_files["tabular"]), target="bought").rule.candidates
    tied = [Trial(rule, 0.9, {"log_loss": 0.5}), Trial(mlp, 0.9, {"log_loss": 0.1}), Trial(ft, 0.8)]
    assert pick_winner(tied, rule, True, "log_loss") is rule
    better = [Trial(rule, 0.85), Trial(mlp, 0.9, {"log_loss": 0.3}), Trial(ft, 0.9, {"log_loss": 0.2})]
    assert pick_winner(better, rule, True, "log_loss") is ft  # a tie between others: the lower log-loss
    failed = [Trial(rule, error="boom"), Trial(mlp, 2.0), Trial(ft, 1.0)]
    assert pick_winner(failed, rule, False, "loss") is ft and pick_winner([Trial(rule)], rule, True, "x") is None


def test_bad_input_is_one_line_saying_what_to_pass(user_files, tmp_path, capsys):
    (tmp_path / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (tmp_path / "one.csv").write_text("a,b,label\n1,2,x\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a").mkdir()
    (tmp_path / "notes" / "a" / "readme.txt").write_text("no images here")
    cases = [
        ([str(tmp_path / "binary.csv")], "binary.csv, line 1, column 1: not UTF-8 text"),
        ([str(tmp_path / "one.csv")], "1 data row(s) under the header; a data set needs many rows"),
        ([str(user_files["tabular"])], "which column is the target? pass --target COLUMN (one of age, city, income, "
                                       "bought)"),
        ([str(user_files["tabular"]), "--target", "colour"], "--target 'colour' is not a column"),
        ([str(tmp_path / "empty")], "expected one subfolder per class holding images"),
        ([str(tmp_path / "notes")], "expected one subfolder per class holding images"),
        ([str(tmp_path / "missing.csv")], "is neither a data set archlab knows (digits, mnist5k"),
        ([str(user_files["text"]), "--target", "x"], "--target names a column of a table or a series"),
    ]
    for args, message in cases:
        assert main(["choose", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert err.count("\n") == 1  # one line


def _accepted(name: str) -> None:
    c = choose(name)
    for cand in c.rule.candidates:
        for settings in (cand.settings, trial_settings(c.profile, cand, seed=0)):
            resolve(RunSpec(task=c.profile.task, model=cand.model, data=name, out=None, settings=dict(settings)))


@pytest.mark.parametrize("name", ["digits", "co2", "sunspots", "wine", "diabetes"])
def test_the_sized_settings_of_shipped_data_are_accepted_by_the_trainer(name):
    _accepted(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist5k", "cmudict", "cmudict-syllables", "breast_cancer"])
def test_the_sized_settings_of_the_larger_shipped_data_are_accepted(name):
    _accepted(name)


@pytest.mark.slow
@pytest.mark.parametrize("name, winner_floor", [("mnist5k", 0.93), ("breast_cancer", 0.93)])
def test_evidence_on_mnist5k_and_breast_cancer(cli, tmp_path, name, winner_floor):
    """The issue's two bake-offs, end to end from the command line (each took 15-55 s on 2 busy cores)."""
    out = tmp_path / "choice.json"
    r = cli("choose", name, "--evidence", "--json", str(out))
    assert r.returncode == 0, r.stderr
    ev = json.loads(out.read_text())["evidence"]
    assert len(ev["results"]) == 3 and all("error" not in x for x in ev["results"])
    best = max(x["value"] for x in ev["results"])
    assert best >= winner_floor and ev["winner"]["model"] in {x["model"] for x in ev["results"]}
    assert ("the evidence agrees" in r.stdout) == ev["agrees"]
