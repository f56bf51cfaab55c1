"""Code the language workloads share: readers, word vocabularies, label noise, padding, and
the SST-2 data/loss/evaluation of the two SST-2 workloads.

- ``read_sst2`` / ``load_sst2``: GLUE SST-2 from ``<data_root>/glue/SST-2/*.tsv`` (held offline),
  else Hugging Face ``datasets`` ``glue/sst2`` when online (train and dev only: GLUE's test
  labels are hidden, so ``test`` is then absent).
- ``read_conllu`` / ``load_conllu_split``: a small CoNLL-U reader (multi-word token lines and
  empty nodes skipped, as UD's evaluation does).
- ``Vocab`` / ``cached_vocab``: a word vocabulary built from the training split only, sorted by
  (-count, word) so it is deterministic, with ``<pad>`` = 0 and ``<unk>`` = 1, cached as JSON
  under ``~/.cache/sam-overparam/language/`` keyed by a hash of the training text and the
  options (the data folder is read-only, so the cache cannot live next to it).
- ``flip_labels``: symmetric label noise on a training split, exact rate, fixed by a seed.

Nothing here imports ``transformers`` or ``datasets`` at module level.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from domains.cache import build_once
from domains.data_check import DataError, reading, verify
from domains.workload import ConfigError, MissingDataError, Target, TrainConfig, Workload

__all__ = [
    "PAD",
    "UNK",
    "Vocab",
    "cached_vocab",
    "read_sst2",
    "load_sst2",
    "read_conllu",
    "load_conllu_split",
    "flip_labels",
    "pad_sequences",
    "check_vocab_size",
    "SST2DataConfig",
    "SST2Classification",
]

PAD, UNK = "<pad>", "<unk>"
SST2_SPLITS = {"train": "train.tsv", "val": "dev.tsv", "test": "test-labeled.tsv"}


# ---------------------------------------------------------------------- vocabulary
class Vocab:
    """Word -> id. Ids 0 and 1 are ``<pad>`` and ``<unk>``; unknown words map to ``<unk>``."""

    pad_id, unk_id = 0, 1

    def __init__(self, words: Sequence[str]) -> None:
        self.itos = [PAD, UNK, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique and exclude <pad>/<unk>")

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1) -> Vocab:
        """Words seen at least ``min_count`` times, most frequent first, ties alphabetical."""
        counts = Counter(t for s in sentences for t in s)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        kept = [w for w, n in counts.items() if n >= min_count]
        kept.sort(key=lambda w: (-counts[w], w))
        return cls(kept)


def language_cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return cache / "sam-overparam" / "language"


def cached_vocab(
    name: str,
    train_sentences: Sequence[Sequence[str]],
    min_count: int,
    cache_dir: Path | None = None,
) -> Vocab:
    """``Vocab.build`` on the training sentences, cached by a hash of their text and options.

    Only the training split is ever passed in: dev and test words are unknown to the model.
    """
    h = hashlib.sha256(f"{name}/min_count={min_count}\n".encode())
    for s in train_sentences:
        h.update(("\x1f".join(s) + "\n").encode())
    path = (cache_dir or language_cache_dir()) / f"{name}-vocab-{h.hexdigest()[:16]}.json"

    def read(p: Path) -> Vocab | None:
        try:
            return Vocab(json.loads(p.read_text())["words"])
        except (ValueError, KeyError, OSError):
            return None  # missing or corrupt: (re)built

    def write(staging: Path) -> Path:
        vocab = Vocab.build(train_sentences, min_count)
        out = staging / path.name
        out.write_text(json.dumps({"min_count": min_count, "words": vocab.itos[2:]}))
        return out

    try:
        # one process builds it (a sweep's workers start together), the others wait
        build_once(path, write, lambda p: read(p) is not None)
    except OSError:
        pass  # an unwritable cache only costs a rebuild
    vocab = read(path)
    return vocab if vocab is not None else Vocab.build(train_sentences, min_count)


def check_vocab_size(what: str, config_value: int, actual: int, field: str = "vocab_size") -> None:
    """The model is sized from the config (so ``--list`` can count parameters without data);
    the data must agree with it exactly, else say which override makes them agree."""
    if config_value != actual:
        raise ConfigError(
            f"{what} has {actual} entries but the config says {field}={config_value}; "
            f"pass --{field}={actual} (the model's size is set by the config, not the data)"
        )


# ---------------------------------------------------------------------- SST-2
def read_sst2(path: Path) -> tuple[list[list[str]], list[int]]:
    """GLUE's ``sentence<TAB>label`` TSV with its header line; sentences are pre-tokenised and
    lower-cased, so whitespace splitting is the tokenizer. Damage is one DataError naming the
    file and line (issue 20, findings 2 and 9)."""
    verify(path)  # a damaged canonical file is refused before it is parsed
    sentences, labels = [], []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{n}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None
            if n == 1:
                if line.split("\t") != ["sentence", "label"]:
                    raise DataError(
                        f"{path}: expected header 'sentence<TAB>label', got {line[:80]!r}"
                    )
                continue
            if not line:
                continue
            sentence, sep, label = line.rpartition("\t")
            if not sep or label not in ("0", "1"):
                raise DataError(f"{path}:{n}: expected 'sentence<TAB>0|1', got {line[:80]!r}")
            sentences.append(sentence.split())
            labels.append(int(label))
    if not sentences:  # e.g. a header-only file: refused here, not by max() mid-run
        raise DataError(
            f"{path}: no examples (expected 'sentence<TAB>label' rows after the header)"
        )
    return sentences, labels


def load_sst2(data_root: Path) -> dict[str, tuple[list[list[str]], list[int]]]:
    """{"train", "val", "test"} -> (token lists, labels): the held TSVs, else HF ``datasets``."""
    folder = Path(data_root) / "glue" / "SST-2"
    if all((folder / f).is_file() for f in SST2_SPLITS.values()):
        return {split: read_sst2(folder / f) for split, f in SST2_SPLITS.items()}
    try:  # online: GLUE's train and dev (its test labels are hidden, so no test split)
        if os.environ.get("HF_DATASETS_OFFLINE") == "1":
            raise ConnectionError("HF_DATASETS_OFFLINE=1")
        from datasets import load_dataset

        ds = load_dataset("glue", "sst2")
        return {
            split: ([s.split() for s in ds[hf]["sentence"]], list(ds[hf]["label"]))
            for split, hf in (("train", "train"), ("val", "validation"))
        }
    except Exception as exc:  # no network, no datasets package, ...
        raise MissingDataError(
            "GLUE SST-2 (train.tsv, dev.tsv, test-labeled.tsv)",
            folder,
            "put GLUE's SST-2 files there (train.tsv and dev.tsv from the GLUE benchmark's "
            "SST-2.zip; test-labeled.tsv = the test sentences with SST's phrase labels), "
            "point --data-root / $SAM_DATA at a folder holding glue/SST-2/, or go online so "
            f"that datasets.load_dataset('glue', 'sst2') can download it ({type(exc).__name__})",
        ) from exc


def flip_labels(labels: Sequence[int], rate: float, num_classes: int, seed: int) -> list[int]:
    """Symmetric label noise: exactly round(rate * n) examples, chosen by ``seed``, get a
    label drawn uniformly from the *other* classes (for two classes: flipped)."""
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"label_noise must be in [0, 1), got {rate}")
    n = len(labels)
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(n, generator=gen)[: round(rate * n)]
    shift = torch.randint(1, num_classes, (len(chosen),), generator=gen)  # never 0: a real flip
    out = list(labels)
    for i, s in zip(chosen.tolist(), shift.tolist()):
        out[i] = (out[i] + s) % num_classes
    return out


# ---------------------------------------------------------------------- CoNLL-U
Sentence = tuple[list[str], list[str]]  # (words, tags)


def read_conllu(lines: Iterable[str], tag_column: str = "upos") -> list[Sentence]:
    """(words, tags) per sentence. Comment lines are skipped, and so are multi-word token
    lines (ids like ``3-4``: the surface form of words listed after them) and empty nodes
    (ids like ``5.1``: enhanced-graph additions), so every word is counted once."""
    col = {"upos": 3, "xpos": 4}.get(tag_column)
    if col is None:
        raise ConfigError(f"tag_column must be upos or xpos, got {tag_column!r}")
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise ValueError(
                f"line {n}: CoNLL-U line with {len(fields)} fields (expected 10): {line[:80]!r}"
            )
        if "-" in fields[0] or "." in fields[0]:
            continue
        words.append(fields[1])
        tags.append(fields[col])
    if words:  # a file without a final blank line
        sentences.append((words, tags))
    return sentences


def load_conllu_split(path: Path, tag_column: str, how_to_get: str) -> list[Sentence]:
    if not Path(path).is_file():
        raise MissingDataError(f"CoNLL-U file {Path(path).name}", Path(path).parent, how_to_get)
    verify(path)  # a damaged canonical file is refused (issue 20, finding 2)
    try:
        return read_conllu(_utf8_lines(Path(path)), tag_column)
    except ValueError as exc:  # read_conllu names the line
        raise DataError(f"{path}: {exc}") from None


def _utf8_lines(path: Path) -> Iterator[str]:
    """The file's lines, decoded; a byte that is not UTF-8 is a DataError naming the line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{n}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None


# ---------------------------------------------------------------------- batching
def pad_sequences(seqs: Sequence[Sequence[int]], pad_value: int, max_length: int) -> torch.Tensor:
    """(N, L) long tensor, each sequence truncated to ``max_length`` and right-padded to the
    longest kept one."""
    length = max(1, min(max_length, max((len(s) for s in seqs), default=1)))
    out = torch.full((len(seqs), length), pad_value, dtype=torch.long)
    for i, s in enumerate(seqs):
        s = list(s)[:length]
        if s:
            out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


# ---------------------------------------------------------------------- SST-2 workloads
@dataclass(frozen=True)
class SST2DataConfig(TrainConfig):
    """Data fields of every SST-2 workload (a workload's config subclasses this)."""

    vocab_size: int = 13_521
    """embedding rows = words seen >= min_count times in train + <pad> + <unk>; checked
    against the data (the model is sized from the config so --list needs no data)"""
    min_count: int = 3
    """minimum training-set count for a word to enter the vocabulary"""
    max_length: int = 60
    """tokens kept per sentence"""
    label_noise: float = 0.0
    """fraction of training labels flipped (exact, chosen by data_seed); in [0, 1)"""
    data_seed: int = 0
    """seed of the label noise and the subsets; the same for every training seed"""
    max_train_examples: int | None = None
    """use only the first N training examples (None = all 67,349)"""
    max_eval_examples: int | None = None
    """use only the first N dev and test examples (None = all)"""
    train_eval_examples: int = 4096
    """fixed random training examples scored for train/loss and train/acc (their labels as
    trained on, noisy or not) at each eval"""
    eval_batch_size: int = 512
    """examples per forward pass at evaluation"""


class SST2Classification(Workload):
    """Data, loss and evaluation of the SST-2 workloads; subclasses give ``build_model`` a
    module mapping (B, T) token ids and (B,) lengths to (B, 2) logits."""

    target = Target("acc", "max", unit="accuracy", scale="percent")

    def __init__(self, config: SST2DataConfig) -> None:
        super().__init__(config)
        self.config: SST2DataConfig = config
        flip_labels([], config.label_noise, 2, 0)  # validates the rate before any data is read
        # split -> (ids (N, L), lengths (N,), labels (N,)); eval_splits has a fixed train subset
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.eval_splits: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        c = self.config
        with reading() as files:  # the files behind the data, stored with each run
            splits = load_sst2(data_root)
        self.data_files = tuple(files)
        # The vocabulary always comes from the whole training split (never dev/test, never a
        # subset), so its size, and with it the model, is the same for every preset.
        vocab = cached_vocab("sst2", splits["train"][0], c.min_count)
        what = f"the SST-2 vocabulary (min_count={c.min_count})"
        check_vocab_size(what, c.vocab_size, len(vocab))
        gen = torch.Generator().manual_seed(c.data_seed)
        for split, (sentences, labels) in splits.items():
            limit = c.max_train_examples if split == "train" else c.max_eval_examples
            sentences, labels = sentences[:limit], labels[:limit]
            if split == "train":
                labels = flip_labels(labels, c.label_noise, 2, c.data_seed)
            encoded = [vocab.encode(s)[: c.max_length] or [Vocab.unk_id] for s in sentences]
            ids = pad_sequences(encoded, Vocab.pad_id, c.max_length)
            lengths = torch.tensor([len(s) for s in encoded])
            self.data[split] = (ids.to(device), lengths.to(device), torch.tensor(labels).to(device))
        ids, lengths, labels = self.data["train"]
        pick = torch.randperm(len(labels), generator=gen)[: c.train_eval_examples].to(device)
        self.eval_splits = {"train": (ids[pick], lengths[pick], labels[pick])}
        self.eval_splits.update({k: v for k, v in self.data.items() if k != "train"})

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data["train"][2]) / self.config.batch_size)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        ids, lengths, labels = self.data["train"]
        order = torch.randperm(len(labels), generator=generator).to(ids.device)
        for idx in order.split(self.config.batch_size):
            b_len = lengths[idx]
            yield ids[idx, : int(b_len.max())], b_len, labels[idx]  # trimmed to the batch's longest

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ids, lengths, labels = batch
        logits = model(ids, lengths)
        loss = F.cross_entropy(logits, labels)
        return loss, {"acc": (logits.argmax(-1) == labels).float().mean().detach() * 100}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Collection[str] | None = None) -> dict[str, float]:
        out = {}
        bs = self.config.eval_batch_size
        for split, (ids, lengths, labels) in self.eval_splits.items():
            if splits is not None and split not in splits:
                continue
            # Similar lengths together, each batch trimmed to its longest: the sums do not
            # depend on the order, and padding was ~4/5 of the Transformer's eval compute.
            order = lengths.argsort()
            loss_sum, correct = 0.0, 0
            for idx in order.split(bs):
                b_len, y = lengths[idx], labels[idx]
                logits = model(ids[idx, : int(b_len.max())], b_len)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(-1) == y).sum().item()
            out[f"{split}/loss"] = loss_sum / len(labels)
            out[f"{split}/acc"] = 100.0 * correct / len(labels)
        return out
