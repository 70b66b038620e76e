import json

import pytest

from archlab.data import SymbolTokenizer, CharTokenizer, tokenizer_from_dict
from archlab.data.pronunciation import edit_distance, g2p_error_rates, load_cmudict, strip_stress
from archlab.errors import ConfigError


@pytest.fixture(scope="module")
def cmu():
    return load_cmudict()


def test_splits_are_fixed_disjoint_and_complete(cmu):
    assert (len(cmu.test), len(cmu.val)) == (12_000, 3_000)
    words = [w for part in (cmu.train, cmu.val, cmu.test) for w, _ in part]
    assert len(words) == len(set(words)) == len(cmu.lexicon) > 120_000
    assert all(set(w) <= set(cmu.graphemes) for w in words[:1000])
    assert cmu.graphemes == ["'"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    again = load_cmudict()
    assert again.test == cmu.test and again.val == cmu.val
    other_seed = load_cmudict(seed=1)
    assert {w for w, _ in other_seed.test} != {w for w, _ in cmu.test}


def test_all_pronunciations_kept_and_stress(cmu):
    lexicon = cmu.lexicon
    assert lexicon["tomato"] == (("T", "AH", "M", "EY", "T", "OW"), ("T", "AH", "M", "AA", "T", "OW"))
    assert len(cmu.phonemes) == 39 and "AH" in cmu.phonemes and "AH0" not in cmu.phonemes
    stressed = load_cmudict(stress=True)
    assert stressed.lexicon["tomato"][0] == ("T", "AH0", "M", "EY1", "T", "OW2")
    assert len(stressed.phonemes) == 69  # 24 consonants + 15 vowels x 3 stress levels
    assert strip_stress(stressed.lexicon["tomato"][0]) == lexicon["tomato"][0]
    several = [e for e in cmu.test if len(e[1]) > 1]
    assert len(several) > 500
    pairs = cmu.pairs(several[:10])
    assert len(pairs) == sum(len(p) for _, p in several[:10]) and len(cmu.pairs(several[:10], False)) == 10
    with pytest.raises(ConfigError, match="test_words \\+ val_words must leave words to train on"):
        load_cmudict(test_words=200_000)


def test_error_rates_score_against_the_closest_reference():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance([], ["A"]) == 1
    refs = [[("T", "AH", "M", "EY", "T", "OW"), ("T", "AH", "M", "AA", "T", "OW")], [("K", "AE", "T")]]
    exact = g2p_error_rates([("T", "AH", "M", "AA", "T", "OW"), ("K", "AE", "T")], refs)
    assert exact == {"per": 0.0, "wer": 0.0}
    one_off = g2p_error_rates([("T", "AH", "M", "AE", "T", "OW"), ("K", "AE", "T")], refs)
    assert one_off == {"per": pytest.approx(1 / 9), "wer": 0.5}
    with pytest.raises(ConfigError, match="predictions and references must pair up, got 1 and 2"):
        g2p_error_rates([("K",)], refs)


def test_symbol_tokenizers_for_the_task(cmu):
    graphemes = CharTokenizer.fit("".join(cmu.graphemes), specials=("<pad>", "<bos>", "<eos>", "<unk>"))
    phonemes = SymbolTokenizer.fit(p for _, prons in cmu.train for p in prons)
    assert (graphemes.vocab_size, phonemes.vocab_size) == (31, 43)
    word, (pron, *_) = cmu.test[0]
    ids = phonemes.encode(pron, bos=True, eos=True)
    assert phonemes.decode(ids) == list(pron) and ids[0] == phonemes.bos_id
    assert graphemes.decode(graphemes.encode(word)) == word
    restored = tokenizer_from_dict(json.loads(json.dumps(phonemes.to_dict())))
    assert restored == phonemes
    with pytest.raises(ConfigError, match="encodes a sequence of symbols, got the str"):
        phonemes.encode("T AH")


def test_the_edit_alignment_lists_the_fewest_edits_in_order():
    from archlab.data.pronunciation import edit_alignment, edit_distance

    pred, ref = ("T", "AH0", "M", "EY1", "T"), ("T", "AH0", "M", "AA1", "T", "OW2")
    pairs = edit_alignment(pred, ref)
    assert pairs == [("=", "T", "T"), ("=", "AH0", "AH0"), ("=", "M", "M"), ("~", "EY1", "AA1"), ("=", "T", "T"),
                     ("-", None, "OW2")]
    assert [p for _, p, _ in pairs if p is not None] == list(pred)  # reading the pairs gives both sides back
    assert [r for _, _, r in pairs if r is not None] == list(ref)
    for a, b in [("kitten", "sitting"), ("", "abc"), ("abc", ""), ("abcdef", "azced"), ("aaa", "aaa")]:
        assert sum(op != "=" for op, _, _ in edit_alignment(a, b)) == edit_distance(a, b)
    assert edit_alignment(("X", "A"), ("A",)) == [("+", "X", None), ("=", "A", "A")]
