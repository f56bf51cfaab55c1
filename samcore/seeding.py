"""One seeding function for python, numpy and torch, plus named generator streams.

Separate streams (data order, initialisation, ...) keep one stream's consumption from
shifting another's: adding an augmentation must not change the model's initial weights.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

__all__ = ["seed_everything", "stream_seed", "make_generator"]


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed derived from (seed, stream name); stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def make_generator(seed: int, stream: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator for one named stream of one seed."""
    gen = torch.Generator(device=device)
    gen.manual_seed(stream_seed(seed, stream))
    return gen
