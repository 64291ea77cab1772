"""Reader of the IDX format of MNIST-like datasets (optionally gzip-compressed).

An IDX file is a big-endian header (two zero bytes, a type code, the number of
dimensions, then one uint32 per dimension) followed by the raw values. MNIST images have
magic 2051 (uint8, 3 dimensions) and labels magic 2049 (uint8, 1 dimension).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from vsml_bench.datasets.checks import DataFileError

_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into an array."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataFileError(f"{name} is not an IDX file (bad magic number)")
    dtype = np.dtype(_TYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(f"{name} is truncated inside its IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataFileError(
            f"{name} holds {len(data)} bytes but its IDX header {shape} needs "
            f"{expected}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed when its name ends in `.gz`."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFileError(f"{path} cannot be decompressed: {e}") from e
    return parse_idx(data, str(path))
