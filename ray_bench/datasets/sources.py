"""Where dataset files come from: a local directory, the public URLs (cached) or the bundled sample.

All three expose the repackaged layout ``<closed|open>_datasets/<Subset>/<axis>.json``.
Remote files are downloaded once into ``$RAY_BENCH_CACHE`` (default ``~/.cache/ray-bench``);
a 404 means the file is absent, any other failure is a :class:`DownloadError`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ray_bench.atomic import write_bytes_atomic
from ray_bench.datasets.iat import IAT_STIMULI_URL
from ray_bench.errors import ConfigError, DownloadError

#: Repackaged files of the reference benchmark (stan-hua/PostTrainingBiasBenchmark).
PTBB_BASE_URL = "https://raw.githubusercontent.com/stan-hua/PostTrainingBiasBenchmark/main/data"
#: ``--source`` keywords.
SAMPLE_SOURCE = "sample"
PUBLIC_SOURCE = "public"
DEFAULT_TIMEOUT_S = 30.0
_STIMULI_NAME = "iat_stimuli.csv"


@dataclass(frozen=True)
class FetchedFile:
    """Bytes of one source file and the name (path or URL) to show in messages."""

    name: str
    data: bytes


def cache_dir() -> Path:
    """The download cache: ``$RAY_BENCH_CACHE`` or ``~/.cache/ray-bench``."""
    env = os.environ.get("RAY_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ray-bench"


def sample_dir() -> Path:
    """The bundled sample set (package data)."""
    return Path(__file__).resolve().parent / "sample"


def is_url(text: str) -> bool:
    """True for ``http://`` and ``https://`` locations."""
    return text.startswith(("http://", "https://"))


class Source:
    """A dataset source in the repackaged layout.

    Args:
        location: A directory, a base URL, ``sample`` or ``public`` (= :data:`PTBB_BASE_URL`).
        timeout: Seconds per download.
    """

    def __init__(self, location: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT_S) -> None:
        text = os.fspath(location)
        self.timeout = timeout
        self.is_sample = text == SAMPLE_SOURCE
        if text == PUBLIC_SOURCE:
            text = PTBB_BASE_URL
        self.url = text.rstrip("/") if is_url(text) else None
        self.root = None if self.url else (sample_dir() if self.is_sample else Path(text).expanduser())
        if self.root is not None and not self.root.is_dir():
            raise ConfigError(
                f"dataset source {text!r} is not a directory, a URL, {SAMPLE_SOURCE!r} or {PUBLIC_SOURCE!r}",
                hint="Pass --source DIR (holding closed_datasets/ and open_datasets/), a base URL, or 'sample'.",
            )
        self.description = SAMPLE_SOURCE if self.is_sample else (self.url or str(self.root))

    def fetch(self, relpath: str) -> FetchedFile | None:
        """The file at ``relpath`` (``closed_datasets/BBQ/age.json``), or ``None`` when absent."""
        if self.url is not None:
            return download(f"{self.url}/{relpath}", self.timeout, missing_ok=True)
        path = self.root / relpath  # type: ignore[operator]
        return FetchedFile(str(path), path.read_bytes()) if path.is_file() else None

    def unexpected_files(self, folder: str, known: tuple[str, ...]) -> list[str]:
        """JSON files in a local ``folder`` that are not among the ``known`` axes (never read)."""
        if self.root is None or not (self.root / folder).is_dir():
            return []
        return sorted(f"{folder}/{p.name}" for p in (self.root / folder).glob("*.json") if p.stem not in known)

    def stimuli(self, override: str | os.PathLike[str] | None) -> FetchedFile:
        """The IAT stimuli CSV: ``override`` (path or URL), else one next to the source, else the public URL.

        A local source is searched for ``iat_stimuli.csv`` in itself, in ``sources/`` and in
        ``../sources/`` (the layout of the shared reference data) before downloading.
        """
        if override is not None:
            return read_location(override, self.timeout)
        if self.root is not None:
            for candidate in (self.root, self.root / "sources", self.root.parent / "sources"):
                if (candidate / _STIMULI_NAME).is_file():
                    return read_location(candidate / _STIMULI_NAME, self.timeout)
        return read_location(IAT_STIMULI_URL, self.timeout)


def read_location(location: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT_S) -> FetchedFile:
    """Read a local file or download a URL (cached); a missing local file is a ConfigError."""
    text = os.fspath(location)
    if is_url(text):
        return download(text, timeout)  # type: ignore[return-value]
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"file {text!r} does not exist", hint="Pass an existing file or an http(s) URL.")
    return FetchedFile(str(path), path.read_bytes())


def download(url: str, timeout: float, *, missing_ok: bool = False) -> FetchedFile | None:
    """Fetch ``url`` through the cache.

    Args:
        url: The http(s) URL.
        timeout: Seconds before giving up on the connection or a read.
        missing_ok: Return ``None`` on HTTP 404 instead of raising.

    Raises:
        DownloadError: The server is unreachable, times out or answers with another error.
    """
    cached = _cache_path(url)
    if cached.is_file():
        return FetchedFile(url, cached.read_bytes())
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
            data = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and missing_ok:
            return None
        raise DownloadError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"could not download {url}: {reason} (offline or server unreachable?)") from None
    _write_cache(cached, data)
    return FetchedFile(url, data)


def _cache_path(url: str) -> Path:
    # Readable host/path layout, plus a short hash so distinct URLs never share a file.
    parts = urllib.parse.urlsplit(url)
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    safe = [p for p in parts.path.split("/") if p not in ("", ".", "..")]
    name = f"{digest}-{safe[-1] if safe else 'index'}"
    return cache_dir() / "downloads" / parts.netloc.replace(":", "_") / Path(*safe[:-1]) / name


def _write_cache(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)
