"""What the graph workloads share: the optional-dependency check and the writable cache.

The held data folder (``$SAM_DATA``) is read-only, while PyG and OGB write ``processed/`` files
next to what they read; so every graph data set is copied or rebuilt into a cache folder first.
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path

__all__ = ["require_graph_extra", "graph_cache_dir"]

_EXTRA_HINT = "install the graph extra: pip install -e .[graph]"


def require_graph_extra(*modules: str) -> None:
    """Import ``modules`` (torch_geometric, ogb, rdkit, ...) or fail naming the extra."""
    for name in modules:
        try:
            with warnings.catch_warnings():
                # PyG 2.x runs torch.jit.script on its classes at import (torch_geometric.nn.
                # pool.select.base): torch >= 2.9 warns "FutureWarning: `torch.jit.script` is
                # deprecated" on stderr of every graph run; not the user's business. Every
                # graph workload imports PyG here first, so the import that warns is this one.
                warnings.filterwarnings(
                    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
                )
                importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"the graph domain needs {name!r} ({exc}); {_EXTRA_HINT}") from exc


def graph_cache_dir(cache_dir: str = "") -> Path:
    """``cache_dir`` if given, else ``$XDG_CACHE_HOME/sam-overparam/graph`` (~/.cache/...).

    Never inside the data root: that may be a read-only shared folder.
    """
    if cache_dir:
        path = Path(cache_dir).expanduser()
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
        path = path / "sam-overparam" / "graph"
    path.mkdir(parents=True, exist_ok=True)
    return path
