"""Tabular data: the bundled tables, CSV files with mixed columns, seeded splits and folds, encoding
fitted on the training rows only, and errors that name the file and the line."""

from __future__ import annotations

import numpy as np
import pytest

from archlab.data import TabularEncoder, load_tabular
from archlab.errors import ConfigError


def test_bundled_tables_have_their_published_shapes():
    cancer, wine, diabetes = (load_tabular(n) for n in ("breast_cancer", "wine", "diabetes"))
    assert (len(cancer), len(cancer.columns), cancer.classes) == (569, 30, ["malignant", "benign"])
    assert np.bincount(cancer.y).tolist() == [212, 357]
    assert (len(wine), len(wine.columns), np.bincount(wine.y).tolist()) == (178, 13, [59, 71, 48])
    assert (len(diabetes), len(diabetes.columns), diabetes.objective) == (442, 10, "regression")
    assert diabetes.y.min() == 25 and diabetes.y.max() == 346  # progression in its own units
    assert cancer.categorical_columns == [] and cancer.missing_counts() == {}


def test_splits_are_fixed_by_the_seed_disjoint_and_stratified():
    data = load_tabular("breast_cancer")
    a, b, c = data.split(0), data.split(0), data.split(1)
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "val", "test"))
    assert not np.array_equal(a.test, c.test)
    everything = np.concatenate([a.train, a.val, a.test])
    assert len(everything) == len(set(everything.tolist())) == 569
    assert len(a.test) == 113 and len(a.val) == 57
    # each class keeps its share (212 / 569 = 37% malignant) in the test rows
    assert abs(np.mean(data.y[a.test] == 0) - 212 / 569) < 0.01


def test_k_folds_put_every_row_in_exactly_one_test_fold():
    data = load_tabular("wine")
    folds = [data.kfold(5, f, seed=3) for f in range(5)]
    tests = np.concatenate([f.test for f in folds])
    assert sorted(tests.tolist()) == list(range(178))
    for f in folds:
        assert not set(f.train) & set(f.test) and not set(f.val) & set(f.test) and not set(f.train) & set(f.val)
        assert len(f.train) + len(f.val) + len(f.test) == 178
        # 59 / 71 / 48 rows per class: every fold holds 11-15 of each
        assert all(9 <= n <= 15 for n in np.bincount(data.y[f.test]))
    with pytest.raises(ConfigError, match="fold must be in 0..4"):
        data.kfold(5, 5)


def _write(path, text):
    path.write_text(text)
    return path


MIXED = """age,city,income,label
34,Paris,51.5,yes
,Lyon,40.0,no
51,Paris,,yes
29,Nice,38.5,no
45,Lyon,62.0,yes
38,,44.0,no
60,Paris,71.0,yes
27,Nice,30.5,no
33,Lyon,47.5,yes
41,Paris,55.0,no
52,Nice,66.0,yes
24,Lyon,29.0,no
"""


def test_a_csv_with_numeric_and_categorical_columns_and_missing_values(tmp_path):
    data = load_tabular(_write(tmp_path / "people.csv", MIXED))
    assert data.target == "label" and data.objective == "classification" and data.classes == ["no", "yes"]
    assert data.columns == ["age", "city", "income"] and data.kinds == ["numeric", "categorical", "numeric"]
    assert data.missing_counts() == {"age": 1, "city": 1, "income": 1}
    rows = np.arange(len(data))
    enc = TabularEncoder.fit(data, rows)
    x_num, x_cat = enc.transform(data, rows)
    # age, income standardised, then one "was missing" column for each
    assert enc.numeric_features == ["age", "income", "age (missing)", "income (missing)"]
    assert x_num.shape == (12, 4) and x_cat.shape == (12, 1)
    assert x_num[1, 2] == 1 and x_num[0, 2] == 0 and x_num[2, 3] == 1
    # a missing age is filled with the median, then scaled like the others
    ages = np.array([34, 51, 29, 45, 38, 60, 27, 33, 41, 52, 24], dtype=float)
    assert x_num[1, 0] == pytest.approx((np.median(ages) - ages.mean()) / ages.std(), abs=1e-6)
    assert enc.categories["city"] == ["Lyon", "Nice", "Paris"] and enc.cardinalities == (4,)
    assert x_cat[:, 0].tolist() == [3, 1, 3, 2, 1, 0, 3, 2, 1, 3, 2, 1]  # 0: the missing city


def test_the_encoder_sees_only_the_training_rows(tmp_path):
    data = load_tabular(_write(tmp_path / "people.csv", MIXED))
    train = np.arange(8)
    enc = TabularEncoder.fit(data, train)
    # Only rows 0..7 count: their ages 34, 51, 29, 45, 38, 60, 27 (row 1 missing)
    assert enc.mean["age"] == pytest.approx(np.mean([34, 51, 29, 45, 38, 60, 27]))
    assert "income" in enc.indicators and "age" in enc.indicators
    # A category first seen after the training rows gets code 0, like a missing one
    enc2 = TabularEncoder.fit(data, np.array([0, 1, 2, 3]))  # Paris, Lyon, Paris, Nice
    _, x_cat = enc2.transform(data, np.array([5]))          # the missing city
    assert x_cat.tolist() == [[0]]
    same = TabularEncoder.from_dict(enc.to_dict())
    assert np.array_equal(same.transform(data, train)[0], enc.transform(data, train)[0])


def test_the_target_decides_classification_or_regression(tmp_path):
    rows = "\n".join(f"{i},{i * 1.5 + 0.25}" for i in range(30))
    data = load_tabular(_write(tmp_path / "r.csv", "x,y\n" + rows + "\n"))
    assert data.objective == "regression" and data.y.dtype == np.float64
    rows = "\n".join(f"{i},{i % 3 + 1}" for i in range(30))
    data = load_tabular(_write(tmp_path / "c.csv", "x,grade\n" + rows + "\n"), target="grade")
    assert data.objective == "classification" and data.classes == ["1", "2", "3"]
    assert load_tabular(tmp_path / "c.csv", target="grade", objective="regression").objective == "regression"
    # a column of numbers listed as categorical is read as categories
    data = load_tabular(tmp_path / "c.csv", target="grade", categorical=("x",))
    assert data.kinds == ["categorical"]


@pytest.mark.parametrize("text, kwargs, message", [
    ("a,b\n" + "1,2\n" * 12, {}, r"which column is the target\? No column is named target / label / class / y; name it with "
                       r"target=COLUMN \(one of a, b\)"),
    ("a,y\n1,2\n", {}, r"1 data row\(s\); a tabular data set needs at least 10 rows"),
    ("a,y\n" + "1,2\n" * 12, {"target": "z"}, r"target='z' is not a column; the header has 'a', 'y'"),
    ("a,y\n" + "1,2\n" * 5 + "1,2,3\n" + "1,2\n" * 5, {}, r"t\.csv, line 7: 3 fields, the header has 2"),
    ("a,y\n" + "1,2\n" * 5 + "1,\n" + "1,2\n" * 5, {}, r"line 7: the target column 'y' is empty"),
    ("a,y\n" + "1,x\n" * 12, {}, r"the target 'y' has one class \('x'\)"),
    ("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(11)) + "twelve,1\n", {},
     r"line 13: column 'a' holds 'twelve' among numbers"),
    ("a,a\n" + "1,2\n" * 12, {}, r"line 1: column 'a' appears twice"),
    ("", {}, r"t\.csv is empty, expected UTF-8 text"),
])
def test_bad_files_get_errors_that_say_where(tmp_path, text, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_tabular(_write(tmp_path / "t.csv", text), **kwargs)


def test_unknown_names_and_unreadable_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown tabular data set 'breast': .*did you mean 'breast_cancer'"):
        load_tabular("breast")
    (tmp_path / "bin.csv").write_bytes(b"a,y\n\xff\xfe,1\n")
    with pytest.raises(ConfigError, match=r"bin\.csv, line 2, column 1: not UTF-8"):
        load_tabular(tmp_path / "bin.csv")
    with pytest.raises(ConfigError, match="is a folder"):
        load_tabular(tmp_path)
    with pytest.raises(ConfigError, match="wine has the target 'cultivar'"):
        load_tabular("wine", target="alcohol")


def test_semicolon_and_tab_separated_files_are_read(tmp_path):
    body = "".join(f"{i};{i % 2}\n" for i in range(12))
    assert len(load_tabular(_write(tmp_path / "s.csv", "x;label\n" + body))) == 12
    body = "".join(f"{i}\t{i % 2}\n" for i in range(12))
    assert load_tabular(_write(tmp_path / "t.tsv", "x\tlabel\n" + body)).columns == ["x"]
