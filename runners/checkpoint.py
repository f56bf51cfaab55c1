"""Checkpoints written atomically with an embedded checksum.

File layout: one header line ``SAMCKPT1 <sha256 of payload>\\n`` then the ``torch.save`` payload.
A write goes to a temporary file, is fsynced, and replaces the old file by rename; the previous
checkpoint is kept as ``<name>.prev`` so a corrupt latest one falls back to it.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "remove_checkpoint", "CorruptCheckpoint"]

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


def _read(path: Path, run_id: str | None = None) -> dict[str, Any]:
    raw = path.read_bytes()
    header, _, data = raw.partition(b"\n")
    parts = header.split(b" ")
    if len(parts) != 2 or parts[0] != _MAGIC:
        raise CorruptCheckpoint(f"{path} is not a checkpoint of this suite (bad header)")
    if hashlib.sha256(data).hexdigest().encode() != parts[1]:
        raise CorruptCheckpoint(f"{path} fails its checksum (truncated or modified)")
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    if not isinstance(payload, dict):
        raise CorruptCheckpoint(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    # A file under this run's name that belongs to another run (copied, or an id collision)
    # would resume the wrong experiment: as bad as a corrupt one.
    if run_id is not None and payload.get("run_id") != run_id:
        raise CorruptCheckpoint(
            f"{path} belongs to run {payload.get('run_id')!r}, not to run {run_id!r}"
        )
    return payload


def load_checkpoint(
    path: str | Path, run_id: str | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest good checkpoint (latest, else ``.prev``), and one warning per bad one.

    With ``run_id``, a checkpoint of another run counts as bad. A leftover ``.tmp`` (a write
    killed before its rename) is never read."""
    path = Path(path)
    warnings: list[str] = []
    for candidate in (path, path.with_name(path.name + ".prev")):
        if not candidate.exists():
            continue
        try:
            return _read(candidate, run_id), warnings
        except (
            CorruptCheckpoint,
            OSError,
            RuntimeError,
            EOFError,
            ValueError,
            pickle.UnpicklingError,
        ) as exc:
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
