import hashlib
from pathlib import Path

import pytest

from archlab.data import cache_dir, fetch, load_text
from archlab.data.download import REMOTE
from archlab.errors import ConfigError

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
DIGEST = hashlib.sha256(TEXT.encode()).hexdigest()


def test_cache_dir_follows_env_and_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHLAB_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "root") == tmp_path / "root"
    monkeypatch.delenv("ARCHLAB_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "archlab"


def test_download_verifies_caches_and_serves_offline(loopback, tmp_path):
    loopback.put("input.txt", TEXT.encode())
    opts = dict(root=tmp_path / "cache", base_url=loopback.url, checksums={"input.txt": DIGEST})
    assert load_text("tinyshakespeare", **opts) == TEXT
    assert loopback.requests == ["/input.txt"]
    # Second load: from the cache, no request, and it works with downloads forbidden.
    assert load_text("tinyshakespeare", download=False, **opts) == TEXT
    assert loopback.requests == ["/input.txt"]
    assert not [p for p in (tmp_path / "cache" / "tinyshakespeare").iterdir() if p.name != "input.txt"]


def test_corrupted_cache_is_fetched_again(loopback, tmp_path):
    loopback.put("input.txt", TEXT.encode())
    opts = dict(root=tmp_path, base_url=loopback.url, checksums={"input.txt": DIGEST})
    path = fetch("tinyshakespeare", **opts)["input.txt"]
    path.write_bytes(TEXT.encode()[:-10])  # truncated
    with pytest.raises(ConfigError, match="corrupted"):
        fetch("tinyshakespeare", download=False, **opts)
    assert load_text("tinyshakespeare", **opts) == TEXT
    assert len(loopback.requests) == 2


def test_wrong_digest_keeps_nothing(loopback, tmp_path):
    loopback.put("input.txt", b"some other file\n")
    with pytest.raises(ConfigError, match=f"expected {DIGEST}"):
        load_text("tinyshakespeare", root=tmp_path, base_url=loopback.url, checksums={"input.txt": DIGEST})
    assert list((tmp_path / "tinyshakespeare").iterdir()) == []


def test_no_network_no_cache_is_a_clear_error(dead_url, tmp_path):
    with pytest.raises(ConfigError, match=r"could not download .*input\.txt.*no verified copy"):
        load_text("tinyshakespeare", root=tmp_path, base_url=dead_url)
    with pytest.raises(ConfigError, match="is not cached and download=False"):
        load_text("tinyshakespeare", root=tmp_path, download=False)


def test_base_url_from_environment(loopback, tmp_path, monkeypatch):
    loopback.put("mirror/input.txt", TEXT.encode())
    monkeypatch.setenv("ARCHLAB_TINYSHAKESPEARE_URL", loopback.url + "/mirror/")
    assert load_text("tinyshakespeare", root=tmp_path, checksums={"input.txt": DIGEST}) == TEXT


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="needs a copy of the public tinyshakespeare input.txt")
def test_published_tinyshakespeare_digest(loopback, tmp_path):
    """The built-in digest is that of the real file: served as is, it passes without overrides."""
    loopback.put("input.txt", SHAKESPEARE.read_bytes())
    text = load_text("tinyshakespeare", root=tmp_path, base_url=loopback.url)
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    assert REMOTE["tinyshakespeare"].files["input.txt"] == hashlib.sha256(SHAKESPEARE.read_bytes()).hexdigest()


def test_missing_file_on_mirror_and_bad_checksum_names(loopback, tmp_path):
    with pytest.raises(ConfigError, match=r"could not download .*/input\.txt \(HTTP 404 "):
        load_text("tinyshakespeare", root=tmp_path, base_url=loopback.url)
    with pytest.raises(ConfigError, match=r"checksums for 'tinyshakespeare' name files \['inptu.txt'\]"):
        fetch("tinyshakespeare", root=tmp_path, checksums={"inptu.txt": DIGEST})
