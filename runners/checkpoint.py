"""Checkpoints written atomically with an embedded checksum.

File layout: one header line ``SAMCKPT1 <sha256 of payload>\\n`` then the ``torch.save`` payload.
A write goes to a temporary file, is fsynced, and replaces the old file by rename; the previous
checkpoint is kept as ``<name>.prev`` so a corrupt latest one falls back to it.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "CorruptCheckpoint"]

_MAGIC = b"SAMCKPT1"


class CorruptCheckpoint(RuntimeError):
    """The file is truncated, modified or not a checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(_MAGIC + b" " + hashlib.sha256(data).hexdigest().encode() + b"\n")
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        os.replace(path, path.with_name(path.name + ".prev"))
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    header, _, data = raw.partition(b"\n")
    parts = header.split(b" ")
    if len(parts) != 2 or parts[0] != _MAGIC:
        raise CorruptCheckpoint(f"{path} is not a checkpoint of this suite")
    if hashlib.sha256(data).hexdigest().encode() != parts[1]:
        raise CorruptCheckpoint(f"{path} fails its checksum (truncated or modified)")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest good checkpoint (latest, else ``.prev``), and warnings about bad ones."""
    path = Path(path)
    warnings: list[str] = []
    for candidate in (path, path.with_name(path.name + ".prev")):
        if not candidate.exists():
            continue
        try:
            return _read(candidate), warnings
        except (CorruptCheckpoint, OSError, RuntimeError, EOFError) as exc:
            warnings.append(f"ignoring checkpoint {candidate}: {exc}")
    return None, warnings


def remove_checkpoint(path: str | Path) -> None:
    path = Path(path)
    for candidate in (
        path,
        path.with_name(path.name + ".prev"),
        path.with_name(path.name + ".tmp"),
    ):
        candidate.unlink(missing_ok=True)
