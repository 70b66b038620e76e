import pytest

from archlab.data import load_text
from archlab.errors import ConfigError


def test_text_file_and_errors(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("héllo\nwörld\n", encoding="utf-8")
    assert load_text(path) == "héllo\nwörld\n"
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\n\xff\xfe broken\n")
    with pytest.raises(ConfigError, match=r"bad\.txt, line 3, column 1: not UTF-8"):
        load_text(bad)
    with pytest.raises(ConfigError, match=r"unknown text data set 'tinyshakespear'.*did you mean 'tinyshakespeare'"):
        load_text("tinyshakespear")


def test_sentence_pairs_split_and_errors(tmp_path):
    from archlab.data import load_sentence_pairs

    path = tmp_path / "en-fr.tsv"
    lines = [f"I have {i} cats.\tJ'ai {i} chats.\tCC-BY 2.0 (France)" for i in range(20)]
    path.write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n", encoding="utf-8")
    data = load_sentence_pairs(path)
    assert data.name == "en-fr" and (len(data.train), len(data.val), len(data.test)) == (16, 2, 2)
    everything = data.train + data.val + data.test
    assert sorted(everything) == sorted((f"I have {i} cats.", f"J'ai {i} chats.") for i in range(20))
    assert load_sentence_pairs(path).test == data.test  # fixed by the seed
    bad = tmp_path / "bad.tsv"
    bad.write_text("hello\tbonjour\nno tab here\n")
    with pytest.raises(ConfigError, match=r"bad\.tsv, line 2: expected source<TAB>target, got 'no tab here'"):
        load_sentence_pairs(bad)
    with pytest.raises(ConfigError, match=r"val_fraction \+ test_fraction must be in \[0, 1\), got 0.5 \+ 0.5"):
        load_sentence_pairs(path, val_fraction=0.5, test_fraction=0.5)


def test_cmudict_words_is_a_fixed_offline_text_of_dictionary_words():
    from archlab.data.pronunciation import WORD

    text = load_text("cmudict-words")
    words = text.split()
    assert len(words) > 120_000 and len(set(words)) == len(words)  # every word once
    assert all(WORD.match(w) for w in words[:1000]) and "tomato" in set(words)
    assert words != sorted(words) and load_text("cmudict-words") == text  # shuffled, the same way every time


def test_ab_order_labels_say_which_letter_comes_first():
    from collections import Counter

    from archlab.data import load_labelled_text

    data = load_labelled_text("ab-order")
    assert (len(data.train), len(data.val), len(data.test)) == (8000, 1000, 1000) and data.classes == ["ab", "ba"]
    for text, label in data.train[:500] + data.test[:500]:
        assert len(text) == 16 and text.count("a") == 1 and text.count("b") == 1
        assert label == ("ab" if text.index("a") < text.index("b") else "ba")
    assert abs(Counter(label for _, label in data.train)["ab"] - 4000) < 200
    # The letters themselves say nothing about the label: every letter is as frequent in both classes.
    freq = {c: Counter("".join(t for t, label in data.train if label == c)) for c in data.classes}
    for letter in "abcdefghijkl":
        shares = [freq[c][letter] / sum(freq[c].values()) for c in data.classes]
        assert abs(shares[0] - shares[1]) < 0.005, letter
    assert load_labelled_text("ab-order").test == data.test


def test_the_offline_default_text_ships_with_python():
    text = load_text("pythondocs")
    assert len(text) > 200_000 and "assignment" in text and "\x00" not in text
    assert load_text("pythondocs") == text  # the same text every time (in one Python version)
