"""Checkpoints written atomically with an embedded checksum, holding no code.

File layout: one header line ``SAMCKPT1 <sha256 of payload>\\n`` then the ``torch.save`` payload.
A write goes to a temporary file unique to the writer (pid and a random token), is fsynced, and replaces the old file by rename; the previous
checkpoint is kept as ``<name>.prev`` so a corrupt latest one falls back to it.

The payload is tensors and plain Python data only (numpy arrays are stored as tensors), and it
is read with ``torch.load(weights_only=True)``: a results folder may be shared between machines
(README), and a pickled object with a ``__reduce__`` would otherwise run code on resume (issue
20, finding 4). A checkpoint that passes its checksum but does not fit the model (another code
version under the same config hash: renamed or reshaped parameters, other optimizer state, a
missing field, a bad RNG state) is refused the same way by ``restore_training_state``, leaving
the model, optimizer and RNGs as they were, so the next candidate or a fresh start is exact
(finding 7).
"""

from __future__ import annotations

import copy
import glob
import hashlib
import io
import os
import pickle
import random
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "remove_checkpoint",
    "restore_training_state",
    "CorruptCheckpoint",
    "IncompatibleCheckpoint",
]

_MAGIC = b"SAMCKPT1"
# The loop's bookkeeping that a resumed run continues from (runners/engine/train.py ``state``).
_STATE_FIELDS = {"epoch": int, "step": int, "wall_time_s": float, "examples": int, "passes": int}


class CorruptCheckpoint(RuntimeError):
    """The file is truncated, modified, not a checkpoint, or holds more than data."""


class IncompatibleCheckpoint(CorruptCheckpoint):
    """A well-formed checkpoint that does not fit this run's model, optimizer or loop."""


def _plain(obj: Any) -> Any:
    """``obj`` with numpy arrays and scalars as tensors and Python numbers, so that the
    payload unpickles under ``weights_only=True`` without an allow-list."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.astype(np.int64) if obj.dtype == np.uint32 else obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):  # exactly: torch.Size and namedtuples stay as they are
        return type(obj)(_plain(v) for v in obj)
    return obj


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(_plain(payload), buf)
    data = buf.getvalue()
    # unique per writer: two processes never write (or rename away) each other's temporary
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + b" " + hashlib.sha256(data).hexdigest().encode() + b"\n")
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # disk full mid-write: do not leave half a file taking the space
        tmp.unlink(missing_ok=True)
        raise
    if path.exists():
        os.replace(path, path.with_name(path.name + ".prev"))
    os.replace(tmp, path)


def _refusal(exc: Exception) -> str:
    """torch's weights-only error is a page of advice; keep the global it refused."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    what = found.group(1) if found else str(exc).strip().splitlines()[0][:120]
    return f"holds code or objects other than tensors and plain data ({what}); not loaded"


def _read(path: Path, run_id: str | None = None) -> dict[str, Any]:
    raw = path.read_bytes()
    header, _, data = raw.partition(b"\n")
    parts = header.split(b" ")
    if len(parts) != 2 or parts[0] != _MAGIC:
        raise CorruptCheckpoint(f"{path} is not a checkpoint of this suite (bad header)")
    if hashlib.sha256(data).hexdigest().encode() != parts[1]:
        raise CorruptCheckpoint(f"{path} fails its checksum (truncated or modified)")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CorruptCheckpoint(f"{path} {_refusal(exc)}") from None
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
    path: str | Path,
    run_id: str | None = None,
    accept: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest good checkpoint (latest, else ``.prev``), and one warning per bad one.

    With ``run_id``, a checkpoint of another run counts as bad. With ``accept``, a payload it
    refuses (by raising ``CorruptCheckpoint``, e.g. ``restore_training_state``) counts as bad
    too, and the next candidate is tried. A leftover ``.tmp`` (a write killed before its
    rename) is never read."""
    path = Path(path)
    warnings: list[str] = []
    for candidate in (path, path.with_name(path.name + ".prev")):
        if not candidate.exists():
            continue
        try:
            payload = _read(candidate, run_id)
            if accept is not None:
                accept(payload)
            return payload, warnings
        except (
            CorruptCheckpoint,
            OSError,
            RuntimeError,
            EOFError,
            ValueError,
            pickle.UnpicklingError,
        ) as exc:
            message = " ".join(str(exc).split())  # one line, whatever torch said
            if isinstance(exc, IncompatibleCheckpoint):
                message = f"{candidate} does not fit this run: {message}"
            warnings.append(f"ignoring checkpoint {candidate}: {message[:500]}")
    return None, warnings


def remove_checkpoint(path: str | Path) -> None:
    path = Path(path)
    temporaries = path.parent.glob(f"{glob.escape(path.name)}.*tmp") if path.parent.is_dir() else []
    for candidate in (path, path.with_name(path.name + ".prev"), *temporaries):
        candidate.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- restoring
def capture_rng_state() -> dict[str, Any]:
    """Every generator a training step draws from (python, numpy, torch, CUDA)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    """Set all generators from ``state``; numpy's key may come back as an int64 tensor."""
    if not isinstance(state, dict) or not {"torch", "numpy", "python"} <= set(state):
        raise IncompatibleCheckpoint("rng state lacks torch, numpy or python")
    name, key, *rest = state["numpy"]
    key = np.asarray(key.numpy() if isinstance(key, torch.Tensor) else key)
    if key.shape != (624,) or key.min() < 0 or key.max() > 0xFFFFFFFF:
        raise IncompatibleCheckpoint(f"numpy rng key of shape {tuple(key.shape)}, not (624,)")
    python = state["python"]
    torch.set_rng_state(state["torch"])
    np.random.set_state((name, key.astype(np.uint32), *rest))
    # random.setstate wants tuples; a round trip through some picklers gives lists
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_optimizer_state(saved: Any, optimizer: torch.optim.Optimizer) -> None:
    """torch checks group and parameter counts only: a buffer of another shape would load and
    fail at the first step. Every per-parameter tensor must have its parameter's shape (or be a
    scalar, like Adam's step)."""
    if not isinstance(saved, dict) or not {"state", "param_groups"} <= set(saved):
        raise IncompatibleCheckpoint("optimizer state lacks 'state' or 'param_groups'")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_ids = [pid for group in saved["param_groups"] for pid in group.get("params", [])]
    if len(saved_ids) != len(params):
        raise IncompatibleCheckpoint(
            f"optimizer state for {len(saved_ids)} parameters, this model has {len(params)}"
        )
    param_of = dict(zip(saved_ids, params))  # torch maps saved ids to parameters by order
    for pid, buffers in saved["state"].items():
        if pid not in param_of or not isinstance(buffers, dict):
            raise IncompatibleCheckpoint(f"optimizer state for unknown parameter {pid!r}")
        shape = tuple(param_of[pid].shape)
        for name, value in buffers.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != shape:
                raise IncompatibleCheckpoint(
                    f"optimizer {name} of shape {tuple(value.shape)} for a parameter of "
                    f"shape {shape}"
                )


def _check_loop_state(state: Any) -> None:
    if not isinstance(state, dict):
        raise IncompatibleCheckpoint(f"loop state is a {type(state).__name__}, not a dict")
    for name, kind in _STATE_FIELDS.items():
        value = state.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise IncompatibleCheckpoint(f"loop state field {name!r} missing or not a number")
        if kind is int and (not isinstance(value, int) or value < 0):
            raise IncompatibleCheckpoint(f"loop state field {name!r} is {value!r}")
    if "best" not in state or not (state["best"] is None or isinstance(state["best"], dict)):
        raise IncompatibleCheckpoint("loop state field 'best' missing or not a dict")


def restore_training_state(
    payload: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any | None = None,
) -> dict[str, Any]:
    """Load a checkpoint into the run's objects and return its loop state, or raise
    ``IncompatibleCheckpoint`` with everything (parameters, optimizer, scheduler, scaler,
    generators) left exactly as it was: torch's loaders copy what matches before they fail."""
    missing = [k for k in ("model", "optimizer", "scheduler", "rng", "state") if k not in payload]
    if missing:
        raise IncompatibleCheckpoint(f"no {', '.join(missing)} in the checkpoint")
    _check_loop_state(payload["state"])
    _check_optimizer_state(payload["optimizer"], optimizer)
    if not isinstance(payload["scheduler"], dict) or set(payload["scheduler"]) != set(
        scheduler.state_dict()
    ):
        raise IncompatibleCheckpoint("scheduler state has other fields than this scheduler")
    before = (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(optimizer.state_dict()),
        copy.deepcopy(scheduler.state_dict()),
        copy.deepcopy(scaler.state_dict()) if scaler is not None else None,
        capture_rng_state(),
    )
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        if scaler is not None and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        _set_rng_state(payload["rng"])
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        model.load_state_dict(before[0])
        optimizer.load_state_dict(before[1])
        scheduler.load_state_dict(before[2])
        if scaler is not None:
            scaler.load_state_dict(before[3])
        _set_rng_state(before[4])
        if isinstance(exc, IncompatibleCheckpoint):
            raise
        reason = " ".join(str(exc).split())[:300]
        raise IncompatibleCheckpoint(f"{type(exc).__name__}: {reason}") from None
    return payload["state"]
