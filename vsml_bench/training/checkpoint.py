"""Checkpoints in a safe format, written atomically.

A checkpoint is one safetensors file: the arrays of a pytree (flattened with
`flax.serialization.to_state_dict`, keys joined by "/") and, in the file's metadata, a
JSON document (generation, config, anything JSON-ready). Nothing is pickled, so loading
a checkpoint never executes code. A file is written under a temporary name in the same
folder, flushed to disk, then renamed into place: a kill at any moment leaves either
the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from vsml_bench.errors import UserError

_META_KEY = "vsml_bench"
_EMPTY = "__empty__"


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    if isinstance(tree, dict):
        if not tree:
            flat[prefix + _EMPTY] = np.zeros((0,), np.float32)
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}/"))
    else:
        flat[prefix.rstrip("/")] = np.asarray(tree)
    return flat


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        parts = key.split("/")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts[-1] != _EMPTY:
            node[parts[-1]] = value
    return tree


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: Path, tree: Any, metadata: dict[str, Any]) -> None:
    """Save a pytree of arrays and JSON-ready metadata to one safetensors file."""
    state = serialization.to_state_dict(jax.device_get(tree))
    flat = _flatten(state)
    data = save(flat, metadata={_META_KEY: json.dumps(metadata)})
    atomic_write_bytes(Path(path), data)


def load_checkpoint(path: Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint into the structure of `template`; return (tree, metadata)."""
    path = Path(path)
    try:
        flat = load_file(str(path))
        with open(path, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_size))
        metadata = json.loads(header["__metadata__"][_META_KEY])
    except (OSError, SafetensorError, KeyError, ValueError) as e:
        raise UserError(f"checkpoint {path} cannot be read: {e}") from e
    try:
        tree = serialization.from_state_dict(template, _unflatten(flat))
    except (ValueError, KeyError) as e:
        raise UserError(
            f"checkpoint {path} does not match this run's structure: {e}"
        ) from e
    return tree, metadata
