"""Text corpora: Tiny Shakespeare (downloaded, verified) or any UTF-8 text file."""

from __future__ import annotations

import os
from pathlib import Path

from archlab.data.common import unknown_name
from archlab.data.download import fetch
from archlab.errors import ConfigError

TEXT_SETS = {"tinyshakespeare": "input.txt"}  # name -> file of the remote set


def read_text_file(path: str | os.PathLike) -> str:
    """A UTF-8 text file; a missing or undecodable file is a ``ConfigError`` naming it (and the line)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"text file {str(path)!r} does not exist")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def load_text(
    name_or_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    **download_options,
) -> str:
    """The text of ``"tinyshakespeare"`` (downloaded once into the cache) or of a text file.

    ``base_url``/``checksums`` (keywords) point the download at a mirror.
    """
    name = str(name_or_path)
    if name in TEXT_SETS:
        paths = fetch(name, root=root, download=download, **download_options)
        return read_text_file(paths[TEXT_SETS[name]])
    if Path(name).expanduser().is_file():
        return read_text_file(name)
    raise unknown_name("text data set", name, TEXT_SETS, extra=", or the path of a text file")
