import json

import pytest

from archlab.data import BPETokenizer, CharTokenizer, WordTokenizer, load_tokenizer, tokenizer_from_dict
from archlab.errors import ConfigError

TEXT = "To be, or not to be: that is the question.\n"


def test_char_tokenizer_round_trip_and_ids():
    tok = CharTokenizer.fit(TEXT)
    assert tok.vocab_size == len(set(TEXT)) == 18
    ids = tok.encode("to be")
    assert tok.decode(ids) == "to be"
    assert tok.tokens == sorted(set(TEXT))  # ids are the sorted characters
    assert ids == [tok.tokens.index(c) for c in "to be"]
    assert tok.pad_id is None and tok.unk_id is None


def test_char_tokenizer_specials_and_unknowns():
    plain = CharTokenizer.fit(TEXT)
    with pytest.raises(ConfigError, match=r"'z' is not in the vocabulary of 18 tokens"):
        plain.encode("zebra")
    tok = CharTokenizer.fit(TEXT, specials=("<pad>", "<unk>"))
    assert (tok.pad_id, tok.unk_id, tok.bos_id) == (0, 1, None)
    assert tok.encode("zo") == [1, tok.encode("o")[0]]
    with pytest.raises(ConfigError, match=r"ids must be in \[0, 20\), got \[20\]"):
        tok.decode([0, 20])


def test_char_tokenizer_saved_as_json(tmp_path):
    tok = CharTokenizer.fit(TEXT, specials=("<pad>",))
    d = json.loads(json.dumps(tok.to_dict()))
    assert CharTokenizer.from_dict(d) == tok and tokenizer_from_dict(d) == tok
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again == tok and again.encode(TEXT) == tok.encode(TEXT)
    with pytest.raises(ConfigError, match="tokenizer type must be one of"):
        tokenizer_from_dict({"type": "morse"})


def test_char_tokenizer_bos_eos_and_skip_special():
    tok = CharTokenizer.fit("abc", specials=("<pad>", "<bos>", "<eos>"))
    ids = tok.encode("cab", bos=True, eos=True)
    assert ids == [1, 5, 3, 4, 2]
    assert tok.decode(ids) == "cab"
    assert tok.decode(ids, skip_special=False) == "<bos>cab<eos>"
    with pytest.raises(ConfigError, match=r"<bos> was asked for, but the tokenizer's specials are \[\]"):
        CharTokenizer.fit("abc").encode("a", bos=True)


CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "The dog sleeps; the fox doesn't.",
    "A quick fox, a lazy dog (and a cat)!",
]


def test_word_tokenizer_vocabulary_unk_and_round_trip():
    tok = WordTokenizer.fit(CORPUS, min_freq=2)
    assert tok.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    # by falling frequency, ties alphabetical: the (4); a, dog, fox (3); then the 2s
    assert tok.tokens[4:8] == ["the", "a", "dog", "fox"]
    assert "sleeps" not in tok.tokens and "doesn't" not in tok.tokens  # seen once: below min_freq
    ids = tok.encode("The lazy cat sleeps.", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and ids.count(tok.unk_id) == 2
    assert tok.decode(ids) == "the lazy <unk> <unk>."
    full = WordTokenizer.fit(CORPUS)
    assert full.decode(full.encode(CORPUS[2])) == "a quick fox, a lazy dog (and a cat)!"
    assert full.split("doesn't") == ["doesn't"]
    cased = WordTokenizer.fit(CORPUS, lower=False)
    assert {"The", "the", "A", "a"} <= set(cased.tokens)
    assert WordTokenizer.fit(CORPUS, lower=False, max_size=3).tokens[4:] == ["dog", "fox", "."]
    with pytest.raises(ConfigError, match="min_freq must be an int >= 1, got 0"):
        WordTokenizer.fit(CORPUS, min_freq=0)


def test_word_tokenizer_saved_as_json(tmp_path):
    tok = WordTokenizer.fit(CORPUS, lower=False)
    tok.save(tmp_path)
    again = WordTokenizer.load(tmp_path)
    assert again == tok and again.lower is False and again.encode(CORPUS[0]) == tok.encode(CORPUS[0])
    with pytest.raises(ConfigError, match="holds a WordTokenizer, not a CharTokenizer"):
        CharTokenizer.load(tmp_path)


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(" ".join(CORPUS * 20), vocab_size=300)


def test_bpe_round_trips_any_text_and_learns_merges(bpe):
    assert bpe.vocab_size == 300
    assert (bpe.pad_id, bpe.bos_id, bpe.eos_id, bpe.unk_id) == (0, 1, 2, 3)
    for text in CORPUS + ["Unseen wörds, 日本語 and emoji 🙂\n\ttabs  double  spaces"]:
        assert bpe.decode(bpe.encode(text)) == text
    # merges learnt: a frequent word is far fewer tokens than its bytes
    assert len(bpe.encode(" quick")) < len(" quick".encode()) // 2
    ids = bpe.encode("fox", bos=True, eos=True)
    assert ids[0] == 1 and ids[-1] == 2 and bpe.decode(ids) == "fox"


def test_bpe_is_deterministic_and_saved_as_json(bpe, tmp_path):
    again = BPETokenizer.train(" ".join(CORPUS * 20), vocab_size=300)
    assert again == bpe
    d = json.loads(json.dumps(bpe.to_dict()))
    restored = tokenizer_from_dict(d)
    assert isinstance(restored, BPETokenizer) and restored.encode(CORPUS[1]) == bpe.encode(CORPUS[1])
    bpe.save(tmp_path)
    assert load_tokenizer(tmp_path).encode(CORPUS[0]) == bpe.encode(CORPUS[0])
    with pytest.raises(ConfigError, match=r"vocab_size must be an int >= 260 \(256 bytes \+ 4 specials\), got 100"):
        BPETokenizer.train("abc", vocab_size=100)


def test_fit_tokenizer_by_name_with_a_mask_token():
    from archlab.data import fit_tokenizer

    texts = ["the cat sat on the mat.", "the dog sat on the log."]
    specials = ("<pad>", "<unk>", "<mask>")
    for kind in ("char", "word", "bpe"):
        tok = fit_tokenizer(kind, texts, specials=specials, bpe_vocab_size=300)
        assert (tok.pad_id, tok.unk_id, tok.mask_id, tok.bos_id) == (0, 1, 2, None), kind
        ids = tok.encode(texts[1])
        assert tok.decode(ids) == texts[1], kind
        assert tok.decode([tok.mask_id, *ids]) == texts[1], kind  # <mask> is dropped like <pad>
        assert tok.decode([tok.mask_id], skip_special=False) == "<mask>", kind
    assert fit_tokenizer("char", "abc").mask_id is None  # only asked-for specials exist
    with pytest.raises(ConfigError, match="tokenizer must be one of char, word, bpe, got 'unigram'"):
        fit_tokenizer("unigram", texts)
    with pytest.raises(ConfigError, match="specials must be among <pad>, <bos>, <eos>, <unk>, <mask>, got"):
        fit_tokenizer("char", texts, specials=("<cls>",))


def test_char_encoding_is_vectorised_and_equal_to_the_lookup_character_by_character():
    text = "Ünïcödé — and ASCII, tabs\tand\nnewlines; 😀 too"
    tok = CharTokenizer.fit(text)
    ids = tok.encode_array(text)
    assert ids is not None and ids.tolist() == [tok.token_to_id(ch) for ch in text] == tok.encode(text)
    assert tok.decode(tok.encode(text)) == text
    # A character outside the vocabulary: no fast path; <unk> where the tokenizer has one, else an error.
    assert tok.encode_array("a?") is None and tok.encode_array("\u2603") is None
    with_unk = CharTokenizer.fit("abc", specials=["<unk>"])
    assert with_unk.encode("abz") == [1, 2, 0]
    with pytest.raises(ConfigError, match="'z' is not in the vocabulary"):
        CharTokenizer.fit("abc").encode("abz")
