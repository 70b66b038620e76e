"""Small user files of every kind `archlab choose` reads, built in a temporary folder."""

from __future__ import annotations

import numpy as np
import pytest


def _words(rng, n, vocab=("red", "blue", "cat", "dog", "runs", "sleeps", "the", "a", "big", "small", "old", "new")):
    return " ".join(rng.choice(vocab, n))


@pytest.fixture(scope="session")
def user_files(tmp_path_factory):
    """{kind: path}: an image folder, a table, two series, pairs, labelled texts (TSV, CSV), plain text."""
    root = tmp_path_factory.mktemp("user-data")
    rng = np.random.default_rng(0)
    files = {}

    from PIL import Image

    folder = root / "shapes"
    for c, (label, level) in enumerate((("dark", 40), ("light", 200))):
        (folder / label).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(level, 20, (12, 12)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / label / f"{i}.png")
    files["images"] = folder

    lines = ["age,city,income,bought"]
    for i in range(60):
        age, city = rng.integers(18, 70), rng.choice(["Paris", "Lyon", "Nice"])
        income = "" if i % 9 == 0 else f"{rng.normal(40, 10):.1f}"
        lines.append(f"{age},{city},{income},{'yes' if age > 40 else 'no'}")
    (root / "customers.csv").write_text("\n".join(lines) + "\n")
    files["tabular"] = root / "customers.csv"

    months = np.arange("2000-01", "2010-01", dtype="datetime64[M]")
    values = 10 + np.sin(np.arange(len(months)) * 2 * np.pi / 12) + 0.01 * np.arange(len(months))
    (root / "sales.csv").write_text("month,sales\n" + "".join(f"{m}-01,{v:.3f}\n" for m, v in zip(months, values)))
    files["series"] = root / "sales.csv"
    (root / "level.csv").write_text("level\n" + "".join(f"{v:.3f}\n" for v in values))
    files["series-one-column"] = root / "level.csv"

    pairs = [(_words(rng, 4), _words(rng, 5, ("le", "la", "chat", "chien", "rouge", "bleu", "dort", "court",
                                              "grand", "petit", "vieux", "neuf"))) for _ in range(80)]
    (root / "en-fr.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    files["text-pairs"] = root / "en-fr.tsv"

    reviews = [(_words(rng, 6), rng.choice(["good", "bad"])) for _ in range(80)]
    (root / "reviews.tsv").write_text("".join(f"{t}\t{y}\n" for t, y in reviews))
    files["text-labels"] = root / "reviews.tsv"
    (root / "reviews.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in reviews))
    files["text-labels-csv"] = root / "reviews.csv"

    (root / "story.txt").write_text("\n".join(_words(rng, 12) + "." for _ in range(200)) + "\n")
    files["text"] = root / "story.txt"
    return files
