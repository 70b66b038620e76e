import pytest

from archlab.data import load_text
from archlab.errors import ConfigError


def test_text_file_and_errors(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("héllo\nwörld\n", encoding="utf-8")
    assert load_text(path) == "héllo\nwörld\n"
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\n\xff\xfe broken\n")
    with pytest.raises(ConfigError, match=r"bad\.txt, line 3: not UTF-8"):
        load_text(bad)
    with pytest.raises(ConfigError, match=r"unknown text data set 'tinyshakespear'.*did you mean 'tinyshakespeare'"):
        load_text("tinyshakespear")
