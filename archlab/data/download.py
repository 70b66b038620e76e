"""Downloads that are cached, verified by SHA-256 and never half-written.

Every remote data set is a row of ``REMOTE``: a base URL and the files under it with their
SHA-256 digests. ``fetch(name)`` returns local paths to verified copies:

1. the cache is ``root`` if given, else ``$ARCHLAB_CACHE``, else ``~/.cache/archlab``; a data set's
   files live in ``<cache>/<name>/``;
2. a cached file whose digest matches is used as is; one that does not (truncated, corrupted) is
   fetched again;
3. a download goes to a temporary file beside the target, is verified, then renamed over it, so an
   interrupted download never leaves a file that looks complete;
4. no network and no cache is a ``ConfigError`` that says where the file was looked for and
   where it was to come from.

The base URL of each data set can be replaced (``base_url=`` or ``$ARCHLAB_<NAME>_URL``, e.g.
``ARCHLAB_MNIST_URL``) to use a mirror; the tests point it at a loopback server.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from archlab.errors import ConfigError, check
from archlab.utils.io import fsync_dir

CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteSet:
    """A downloadable data set: where its files are and what their SHA-256 digests must be."""

    base_url: str
    files: dict[str, str]  # file name -> SHA-256 (hex) of the canonical file
    source: str = ""  # who publishes it, for error messages and docs


REMOTE: dict[str, RemoteSet] = {
    # Karpathy's char-rnn corpus: 40,000 lines of Shakespeare, 1,115,394 bytes.
    "tinyshakespeare": RemoteSet(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare",
        {"input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
        "github.com/karpathy/char-rnn",
    ),
    # Digests: TensorFlow Datasets' url_checksums/mnist.txt, agreeing with other public lists.
    "mnist": RemoteSet(
        "https://ossci-datasets.s3.amazonaws.com/mnist",
        {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        "yann.lecun.com/exdb/mnist (mirrored)",
    ),
    # Digests: TensorFlow Datasets' url_checksums/fashion_mnist.txt, agreeing with other public lists.
    "fashion_mnist": RemoteSet(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        "github.com/zalandoresearch/fashion-mnist",
    ),
    # Digest: the one Keras' cifar10 loader pins, agreeing with other public records.
    "cifar10": RemoteSet(
        "https://www.cs.toronto.edu/~kriz",
        {"cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
        "www.cs.toronto.edu/~kriz/cifar.html",
    ),
}


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$ARCHLAB_CACHE``, else ``~/.cache/archlab``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("ARCHLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "archlab"


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def base_url_for(name: str, base_url: str | None = None) -> str:
    """The argument, else ``$ARCHLAB_<NAME>_URL``, else the published location."""
    env = os.environ.get(f"ARCHLAB_{name.upper()}_URL")
    return (base_url or env or REMOTE[name].base_url).rstrip("/")


def fetch(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str | None = None,
    checksums: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> dict[str, Path]:
    """Verified local copies of every file of data set ``name``: ``{file name: path}``.

    ``checksums`` replaces the expected digests (for mirrors serving other bytes, and tests).
    """
    check(name in REMOTE, f"no downloadable data set {name!r}; known: {', '.join(sorted(REMOTE))}")
    remote = REMOTE[name]
    extra = sorted(set(checksums or {}) - set(remote.files))
    check(not extra,
          f"checksums for {name!r} name files {extra} it does not have; its files: {', '.join(remote.files)}")
    expected = {**remote.files, **(checksums or {})}
    url = base_url_for(name, base_url)
    folder = cache_dir(root) / name
    paths = {}
    for filename in remote.files:
        path = folder / filename
        if not (path.is_file() and sha256_of(path) == expected[filename]):
            if not download:
                state = "is corrupted (SHA-256 mismatch)" if path.exists() else "is not cached"
                raise ConfigError(
                    f"data set {name!r}: {path} {state} and download=False; "
                    f"allow the download or place the file from {url}/{filename} there"
                )
            _download(f"{url}/{filename}", path, expected[filename], name=name, timeout=timeout)
        paths[filename] = path
    return paths


def _download(url: str, path: Path, sha256: str, *, name: str, timeout: float) -> None:
    """Download ``url`` to a temporary file, verify its digest, then rename it to ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"data set {name!r}: cannot create the cache folder {path.parent} ({e}); "
                          f"set $ARCHLAB_CACHE or root= to a writable folder") from e
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                size = int(response.headers.get("Content-Length") or 0) or None
                # A progress bar on a terminal only (disable=None); silent in logs and tests.
                with tqdm(total=size, unit="B", unit_scale=True, desc=path.name, disable=None, leave=False) as bar:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
            raise ConfigError(
                f"data set {name!r}: could not download {url} ({reason}) and there is no "
                f"verified copy at {path}; connect to the network, set $ARCHLAB_{name.upper()}_URL to a "
                f"mirror, or place the file there"
            ) from e
        got = sha256_of(tmp)
        if got != sha256:
            raise ConfigError(
                f"data set {name!r}: {url} has SHA-256 {got}, expected {sha256}; "
                f"the download is corrupted or the mirror serves another file (nothing was kept)"
            )
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
