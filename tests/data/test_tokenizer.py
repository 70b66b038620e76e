import json

import pytest

from archlab.data import CharTokenizer, load_tokenizer, tokenizer_from_dict
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
