"""Run one function in N fresh processes that start it at the same moment (spawn + a barrier),
as a sweep's workers do on a cold cache. The functions here are what those processes run."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from pathlib import Path
from typing import Any


def run_together(fn: str, args: tuple, n: int = 4, timeout: float = 180) -> list[Any]:
    """``fn(*args)`` (a function of this module, by name) in ``n`` spawned processes released
    together; their results in process order. Raises with the child's traceback if one fails."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(barrier, queue, i, fn, args)) for i in range(n)]
    for p in procs:
        p.start()
    try:
        results = dict(queue.get(timeout=timeout) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    failed = [r for r in results.values() if isinstance(r, str) and r.startswith("Traceback")]
    assert not failed, failed[0]
    assert [p.exitcode for p in procs] == [0] * n
    return [results[i] for i in range(n)]


def _child(barrier: Any, queue: Any, index: int, fn: str, args: tuple) -> None:
    try:
        barrier.wait(timeout=120)  # imports done: every process starts the work at once
        queue.put((index, globals()[fn](*args)))
    except BaseException:
        queue.put((index, traceback.format_exc()))


def _count(counter: str) -> None:
    with open(counter, "a") as f:  # O_APPEND: one whole line per write, from any process
        f.write(f"{os.getpid()}\n")


def build_counted(target: str, counter: str) -> tuple[bool, str]:
    """``build_once`` of a file whose build is logged to ``counter`` and takes 0.5 s, so that
    the other processes arrive while it is being built."""
    from domains.cache import build_once

    def build(staging: Path) -> Path:
        _count(counter)
        time.sleep(0.5)
        (staging / "entry").write_text("built")
        return staging / "entry"

    built = build_once(Path(target), build)
    return built, Path(target).read_text()


def load_cifar_counted(data_root: str, cache_home: str, counter: str) -> list[int]:
    """``load_cifar10`` on a cold cache, each JPEG-tar decode logged to ``counter``."""
    os.environ["XDG_CACHE_HOME"] = cache_home
    from domains.vision import cifar10

    decode = cifar10.decode_jpeg_tar

    def counted(path: Path) -> Any:
        _count(counter)
        return decode(path)

    cifar10.decode_jpeg_tar = counted  # the module-level name load_cifar10 calls
    raw = cifar10.load_cifar10(Path(data_root), download=False)
    return [int(raw["train"][1].sum()), int(raw["test"][1].sum()), len(raw["train"][0])]


def load_molecules(data_root: str, cache: str) -> list[int]:
    """The offline OGB rebuild from a MoleculeNet CSV (it logs "rebuilding ... (once)")."""
    from domains.graph.molecule_data import load_ogb_dataset

    dataset, split = load_ogb_dataset("ogbg-molhiv", Path(data_root), Path(cache))
    return [len(dataset), *(len(split[k]) for k in ("train", "valid", "test"))]
