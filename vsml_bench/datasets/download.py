"""Downloads of dataset files from their publishers, checked by SHA-256 and cached.

Every file lives at `data_root() / dataset_name / filename`. `fetch` reuses a cached
file only when its SHA-256 matches the published one; otherwise it downloads the file
into a temporary file in the same folder, verifies it, and only then renames it into
place, so an interrupted or corrupt download never leaves a file under the final name.
When a file cannot be obtained (offline, publisher unreachable, wrong checksum), the
error lists, for each such file, its URL, SHA-256 and the exact path where a copy
fetched by hand can be put. Nothing here touches the network at import time.

Several processes fetching the same file at once (e.g. MPI workers on a cold cache) are
safe: each writes its own temporary file and the atomic rename makes one of them win.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vsml_bench.datasets.checks import DataFileError, sha256_of

logger = logging.getLogger(__name__)

DATA_ENV_VAR = "VSML_BENCH_DATA"

_CHUNK_SIZE = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RemoteFile:
    """One file as its publisher serves it.

    Attributes:
        url: where to download it from (http, https or file URL).
        filename: the name it is stored under in the dataset's cache folder.
        sha256: hex SHA-256 of its bytes.
        size: its size in bytes, if known (lets a truncated file be told apart cheaply).
    """

    url: str
    filename: str
    sha256: str
    size: int | None = None


def data_root() -> Path:
    """The folder holding downloaded datasets.

    The environment variable `VSML_BENCH_DATA` when set and non-empty, else the user
    cache folder of "vsml-bench" (e.g. `~/.cache/vsml-bench` on Linux).
    """
    configured = os.environ.get(DATA_ENV_VAR, "")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("vsml-bench"))


def dataset_dir(dataset_name: str, root: Path | None = None) -> Path:
    """The cache folder of one dataset: `root / dataset_name` (root: `data_root()`)."""
    return (data_root() if root is None else Path(root)) / dataset_name


def select_files(
    files: Iterable[RemoteFile], filenames: Sequence[str]
) -> list[RemoteFile]:
    """The entries of `files` with the given filenames, in the order of `filenames`."""
    by_name = {f.filename: f for f in files}
    missing = [name for name in filenames if name not in by_name]
    if missing:
        raise DataFileError(
            f"no remote file named {', '.join(missing)}; given: {', '.join(by_name)}"
        )
    return [by_name[name] for name in filenames]


def _is_valid(path: Path, remote: RemoteFile) -> bool:
    if not path.is_file():
        return False
    if remote.size is not None and path.stat().st_size != remote.size:
        return False
    return sha256_of(path) == remote.sha256


class _Reporter:
    """Download progress: a rich bar on an interactive stderr, log lines otherwise."""

    def __init__(self, remote: RemoteFile, total: int | None):
        self.remote = remote
        self.total = total
        self.done = 0
        self._next_log_fraction = 0.1
        self._progress = None
        if sys.stderr.isatty():
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def __enter__(self) -> _Reporter:
        logger.info("downloading %s", self.remote.url)
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self.remote.filename, total=self.total)
        return self

    def advance(self, num_bytes: int) -> None:
        self.done += num_bytes
        if self._progress is not None:
            self._progress.update(self._task, advance=num_bytes)
        elif self.total and self.done >= self._next_log_fraction * self.total:
            logger.debug(
                "%s: %d of %d bytes", self.remote.filename, self.done, self.total
            )
            self._next_log_fraction += 0.1

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _download(remote: RemoteFile, target: Path) -> None:
    """Download `remote` to `target` through a verified temporary file.

    Raises `DataFileError` on a short or altered download and lets network errors
    (`OSError`, `http.client.HTTPException`) through; in every failing case the
    temporary file is removed and `target` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened exclusively, rather than `tempfile.mkstemp`, so that the
    # final file gets the permissions of the user's umask instead of 0600.
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        digest = hashlib.sha256()
        with (
            open(temp, "xb") as out,
            urllib.request.urlopen(remote.url, timeout=_TIMEOUT_S) as response,
        ):
            header = response.headers.get("Content-Length")
            total = int(header) if header and header.isdigit() else remote.size
            with _Reporter(remote, total) as reporter:
                while block := response.read(_CHUNK_SIZE):
                    out.write(block)
                    digest.update(block)
                    reporter.advance(len(block))
            received = reporter.done

        # urllib returns a short body without error when a connection closes early, so
        # the length announced by the server is checked here.
        if header and header.isdigit() and received != int(header):
            raise DataFileError(
                f"download of {remote.url} broke off after {received} of {header} bytes"
            )
        if remote.size is not None and received != remote.size:
            raise DataFileError(
                f"download of {remote.url} has {received} bytes, expected {remote.size}"
            )
        actual = digest.hexdigest()
        if actual != remote.sha256:
            raise DataFileError(
                f"download of {remote.url} has SHA-256 {actual}, expected "
                f"{remote.sha256}"
            )
        os.replace(temp, target)
        logger.info("saved %s (%d bytes)", target, received)
    finally:
        temp.unlink(missing_ok=True)


def _describe_failures(
    dataset_name: str, failures: list[tuple[RemoteFile, Path, str]]
) -> str:
    lines = [
        f"dataset {dataset_name!r}: {len(failures)} file(s) could not be obtained. "
        "Download each by hand and put it at the path shown (its SHA-256 must match), "
        f"or set {DATA_ENV_VAR} to a folder whose {dataset_name!r} subfolder holds "
        "them:"
    ]
    for remote, path, reason in failures:
        size = "" if remote.size is None else f"\n    size:    {remote.size} bytes"
        lines.append(
            f"  {remote.filename}: {reason}\n"
            f"    url:     {remote.url}\n"
            f"    sha256:  {remote.sha256}{size}\n"
            f"    path:    {path}"
        )
    return "\n".join(lines)


def fetch(
    dataset_name: str, files: Iterable[RemoteFile], root: Path | None = None
) -> dict[str, Path]:
    """Local, verified copies of a dataset's files, downloading those not cached.

    Args:
        dataset_name: the cache subfolder, e.g. "kmnist".
        files: the files to obtain.
        root: the data folder; `data_root()` when None.

    Returns:
        {filename: path} for every file, each with the expected SHA-256.

    Raises:
        DataFileError: when some file cannot be downloaded or fails its check; the
            message gives each such file's URL, SHA-256 and the path to put it at.
    """
    folder = dataset_dir(dataset_name, root)
    paths = {}
    failures = []
    for remote in files:
        path = folder / remote.filename
        if _is_valid(path, remote):
            logger.debug("using cached %s", path)
            paths[remote.filename] = path
            continue
        stale = path.exists()
        if stale:
            logger.warning("%s does not match its SHA-256; downloading it again", path)
        try:
            _download(remote, path)
        except DataFileError as e:
            reason = str(e)
        except (OSError, http.client.HTTPException) as e:
            detail = e.reason if isinstance(e, urllib.error.URLError) else e
            reason = f"download failed ({detail})"
        else:
            paths[remote.filename] = path
            continue
        if stale:
            reason += "; the file already at the path does not match its SHA-256"
        failures.append((remote, path, reason))
    if failures:
        raise DataFileError(_describe_failures(dataset_name, failures))
    return paths
