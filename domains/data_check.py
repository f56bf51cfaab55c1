"""Data sets read offline are checked against the canonical files before anything uses them.

Damaged data that still parses (a CSV cut at a row boundary, a tar cut at a member boundary)
would otherwise be trained on silently under the normal run id (issue 20, finding 2). Each file
the suite reads offline has a canonical copy (the held ../shared/data, README "Data"): its size and
SHA-256 are below. ``verify(path)`` refuses a file under a canonical name whose size or digest
differs, with one line naming the file and what is wrong. A file the table does not know (a
user's own data set: ImageNet, UD Perseus, an OGB download) is not checked.

Override for users' own variants of these files: ``SAM_DATA_UNCHECKED=1`` skips the check
(the run still records its data's identity, so the variant is visible in the store).

``source_key(paths)`` keys a cache entry by its sources' names, sizes and modification times,
so a cache built from a damaged file is rebuilt once the file is repaired (finding 3).

``reading()`` collects the files ``verify`` sees while a workload loads its data;
``fingerprint(paths)`` (name -> size and SHA-256) is what each run stores of them (the data's
identity, kept beside the run, not in its id).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from domains.workload import MissingDataError

__all__ = [
    "CANONICAL",
    "DataError",
    "verify",
    "verify_all",
    "unchecked",
    "source_key",
    "identity",
    "reading",
    "fingerprint",
]

UNCHECKED_ENV = "SAM_DATA_UNCHECKED"

# <path under the data root>: (size in bytes, sha256) of the canonical copy.
CANONICAL: dict[str, tuple[int, str]] = {
    "moleculenet/hiv.csv": (1988198, "3a3c7a4ea9626211fe959ef988394670dd76d556ca3c6173b70c88256e4c3555"),
    "moleculenet/tox21.csv": (458635, "b58cc1f683e78e3c7a1bf7116e9aac0119804018d100f7b8cdb0857941c31aca"),
    "MNIST/raw/t10k-images-idx3-ubyte.gz": (1602050, "5634745efa576a17e7d4cf5cd9d09123c75e6538e5114267c2d156edaf519341"),
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": (4517, "ae18e77e031ccde52407f794d123116439864147d33ac992975f85dd4dc42af6"),
    "MNIST/raw/train-images-idx3-ubyte.gz": (9630610, "71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64"),
    "MNIST/raw/train-labels-idx1-ubyte.gz": (28878, "fe03b8bd7915f70bf5aa08be480aa413fbd85afcaa58b35d230d335f284fd88e"),
    "cifar10/cifar10-jpeg.tar": (92682240, "30133b904001f4f004f5fc1df0a6dd39e16d1e62ecc5a084685f392b645d2a38"),
    "glue/SST-2/dev.tsv": (94931, "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
    "glue/SST-2/test-labeled.tsv": (194804, "c0efc56ade6e0598d0f8daca1976e232aee0bcabca8e599341cad290d9d10b3c"),
    "glue/SST-2/train.tsv": (3806081, "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
    "ud/UD_English-EWT/en_ewt-ud-dev.conllu": (1805545, "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6"),
    "ud/UD_English-EWT/en_ewt-ud-test.conllu": (1804515, "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd"),
    "ud/UD_English-EWT/en_ewt-ud-train.conllu": (14203025, "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b"),
    "planetoid/CiteSeer/raw/ind.citeseer.allx": (595021, "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668"),
    "planetoid/CiteSeer/raw/ind.citeseer.ally": (55623, "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95"),
    "planetoid/CiteSeer/raw/ind.citeseer.graph": (61987, "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7"),
    "planetoid/CiteSeer/raw/ind.citeseer.test.index": (5000, "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4"),
    "planetoid/CiteSeer/raw/ind.citeseer.tx": (260321, "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21"),
    "planetoid/CiteSeer/raw/ind.citeseer.ty": (24135, "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce"),
    "planetoid/CiteSeer/raw/ind.citeseer.x": (31087, "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6"),
    "planetoid/CiteSeer/raw/ind.citeseer.y": (3014, "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924"),
    "planetoid/Cora/raw/ind.cora.allx": (257305, "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543"),
    "planetoid/Cora/raw/ind.cora.ally": (47959, "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71"),
    "planetoid/Cora/raw/ind.cora.graph": (59847, "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d"),
    "planetoid/Cora/raw/ind.cora.test.index": (5000, "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875"),
    "planetoid/Cora/raw/ind.cora.tx": (148025, "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a"),
    "planetoid/Cora/raw/ind.cora.ty": (28135, "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad"),
    "planetoid/Cora/raw/ind.cora.x": (22119, "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab"),
    "planetoid/Cora/raw/ind.cora.y": (4054, "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1"),
}  # fmt: skip

_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process
_reads: ContextVar[list[Path] | None] = ContextVar("data_check_reads", default=None)


class DataError(MissingDataError, ValueError):
    """A data file is there but is not what it must be; the message names it and the fault
    (a ValueError too: the parse errors it replaces were ValueErrors)."""

    def __init__(self, message: str) -> None:
        FileNotFoundError.__init__(self, message)


def unchecked() -> bool:
    """The documented override (README "Data"): ``SAM_DATA_UNCHECKED=1``."""
    return os.environ.get(UNCHECKED_ENV, "") not in ("", "0")


def _canonical_name(path: Path) -> str | None:
    parts = Path(path).parts
    for n in (4, 3, 2):  # planetoid/<Name>/raw/<file> is the longest key
        key = "/".join(parts[-n:])
        if key in CANONICAL:
            return key
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest(path: Path) -> str:
    """SHA-256 of ``path``, once per process while its size and mtime stay the same."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _verified:
        _verified[memo] = _sha256(path)
    return _verified[memo]


def verify(path: str | Path) -> None:
    """Refuse ``path`` (DataError, one line) if it is a canonical file that is damaged."""
    path = Path(path)
    reads = _reads.get()
    if reads is not None and path.is_file():
        reads.append(path)
    key = _canonical_name(path)
    if key is None or unchecked() or not path.is_file():
        return
    size, digest = CANONICAL[key]
    st = path.stat()
    hint = f"restore the original {key}, or set {UNCHECKED_ENV}=1 to use your own variant"
    if st.st_size != size:
        raise DataError(
            f"{path}: {st.st_size:,} bytes, the canonical {key} has {size:,} (truncated or "
            f"another version); {hint}"
        )
    if _digest(path) != digest:
        raise DataError(f"{path}: SHA-256 differs from the canonical {key} (damaged); {hint}")


def verify_all(paths: Iterable[str | Path]) -> None:
    for path in paths:
        verify(path)


def identity(paths: Iterable[str | Path]) -> dict[str, dict[str, int]]:
    """The sources' identity for the run record: name -> size and modification time."""
    out: dict[str, dict[str, int]] = {}
    for path in sorted(Path(p) for p in paths):
        if path.is_file():
            st = path.stat()
            out[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


def source_key(paths: Iterable[str | Path]) -> str:
    """A short key of the sources' names, sizes and modification times: a cache entry named
    with it is rebuilt when any source changes (repaired, replaced)."""
    text = repr(
        sorted((Path(k).name, v["size"], v["mtime_ns"]) for k, v in identity(paths).items())
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextmanager
def reading() -> Iterator[list[Path]]:
    """Collect the existing files ``verify`` is asked about inside the block: the files a
    workload's data was read from (every offline loader verifies what it reads)."""
    files: list[Path] = []
    token = _reads.set(files)
    try:
        yield files
    finally:
        _reads.reset(token)


def fingerprint(paths: Iterable[str | Path]) -> dict[str, dict[str, int | str]]:
    """The data's identity stored with a run: file -> size in bytes and SHA-256 (a user's
    variant under SAM_DATA_UNCHECKED=1 is told apart from the canonical file by its digest)."""
    out: dict[str, dict[str, int | str]] = {}
    for path in sorted({Path(p) for p in paths}):
        if path.is_file():
            out[str(path)] = {"size": path.stat().st_size, "sha256": _digest(path)}
    return out
