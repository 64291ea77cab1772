"""SHA-256 verification of data files, with errors that say what was expected."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vsml_bench.errors import UserError


class DataFileError(UserError):
    """A data file is missing, truncated, altered or not in the expected format."""


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, sha256: str, size: int | None = None) -> None:
    """Raise `DataFileError` unless `path` exists and has the given SHA-256 (and size).

    Args:
        path: the file.
        sha256: the expected hex digest.
        size: the expected size in bytes, if known; checked first since it is cheap.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file {path} is missing (expected SHA-256 {sha256})")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DataFileError(
            f"data file {path} has {actual_size} bytes, expected {size} "
            f"(SHA-256 {sha256}); it is truncated or altered: delete it and fetch "
            "it again"
        )
    actual = sha256_of(path)
    if actual != sha256:
        raise DataFileError(
            f"data file {path} has SHA-256 {actual}, expected {sha256}; it is "
            "truncated or altered: delete it and fetch it again"
        )


def read_sha256sums(path: Path) -> dict[str, str]:
    """Parse a `sha256sum` listing into {relative path: digest}."""
    sums = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums
