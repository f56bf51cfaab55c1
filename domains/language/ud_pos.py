"""Part-of-speech tagging with a Transformer encoder trained from scratch, the paper's Fig. 1
POS row and Fig. 5d (Shin et al., UAI 2025, appendix A; numbers in ../shared/PAPERS.md).

Source: the paper says it follows the Flax example ``examples/nlp_seq`` (google/flax:
models.py, input_pipeline.py, train.py); this file is that example in plain torch.

Task: one tag per token of a Universal Dependencies treebank. Data: CoNLL-U files
``<data_root>/ud/<treebank>/<prefix>-ud-{train,dev,test}.conllu`` (fetched from the treebank's
GitHub repository into the user cache when absent and online). Default: UD English-EWT with
UPOS (12,544 / 2,001 / 2,077 sentences; the only treebank with a train split held offline).
The ``paper`` preset reads UD Ancient Greek-Perseus ``grc_perseus-ud-*.conllu`` with XPOS (the
9-character positional tags, e.g. ``n-s---mn-``), as the paper and the Flax example's README
(which runs UD v2.0's ``UD_Ancient_Greek/grc-ud-*.conllu``, this treebank's pre-2.2 name).
As in Flax's input pipeline:
- vocabularies from train only: FORM (the <= 100k most frequent forms, no minimum count) and
  the tag column, each after ``<pad>`` = 0, ``<unk>`` = 1, ``<root>`` = 2 (EWT: 19,674 forms
  -> vocab_size 19,677; 17 UPOS -> num_tags 20). Dev/test forms and tags unseen in train map
  to ``<unk>``; an unseen tag is then a target the model never learned (scored, counted wrong).
- every sentence starts with a ROOT token whose input is ``<root>`` and whose target is the
  ``<root>`` tag; sentences are cut to ``max_length`` tokens including ROOT (Flax: 256).
- loss and accuracy weigh every target > 0 (Flax's ``weights = targets > 0``): padding is
  excluded, ROOT and ``<unk>`` targets count. So ``acc`` includes one nearly free ROOT token
  per sentence, as the paper's numbers do; ``word_acc`` (also logged) leaves ROOT out.

Model (Flax ``Transformer``): token embedding (truncated normal, std 1/sqrt(d), Flax's
``Embed`` default) -> dropout -> + fixed sinusoidal positions (sin on even, cos on odd
features; no parameters) -> 6 pre-LayerNorm blocks [LN -> self-attention (q, k, v, out
projections d x d without bias, heads d/64, attention dropout) -> dropout -> residual;
LN -> Dense 4d -> ELU -> dropout -> Dense d -> dropout -> residual] -> LayerNorm -> Dense to
the tags. Kernels xavier-uniform (each d x d projection on its own, as Flax's DenseGeneral),
biases N(0, 1e-6), LayerNorm eps 1e-6, dropout 0.3 everywhere. Parameters, exactly:
    N(d) = 12·L·d² + (vocab_size + num_tags + 2 + 9·L)·d + num_tags        (L = 6 layers)
Width 1x = d 256; grid d 128..640 = 0.5x..2.5x (d a multiple of 64: heads 64 wide).

Vocabulary and tag-set sizes are config fields so that ``--list`` counts parameters on the meta
device without data; ``setup_data`` checks them against the loaded treebank and raises one
ConfigError naming the overrides that fit (``--vocab_size=... --num_tags=...``): the config
stored with a run is then always the model that ran (a silent update would store one model and
train another). ``vocab_size=0`` / ``num_tags=0`` size the model from the train split instead
(the stored config says "from the data", the treebank names the data, ``n_params`` records the
count): ``sweeps/paper.yaml`` runs the PoS entries that way, so they run on whatever Perseus
release the user holds; such a model cannot be built (or counted) before ``setup_data``. The ``paper`` preset's sizes are *inferred*: the Perseus train split is not
held offline, and the paper's counts 5.54 / 13.44 / 23.70 / 36.31 / 51.29M fix only their sum
(vocab_size + num_tags in 34,000..34,005 reproduces all five; num_tags alone moves a count by
num_tags, below the rounding). We take 33,003 + 1,000 = 34,003 (5,540,200 / 13,438,696 /
23,696,488 / 36,313,576 / 51,289,960); on real Perseus data the check prints the true pair to
pass (e.g. as a sweep entry's ``overrides``), and each entry the true sum differs by moves N(d)
by d. With EWT (``paper-ewt``, 19,677 + 20): 3.71 / 9.78 / 18.2 / 29.0 / 42.1M.

Recipe (Flax train.py): AdamW (0.9, 0.98, eps 1e-9), wd 0.1 on every parameter (optax adamw
without a mask), lr 0.05 x min(1, t/8000) x 1/sqrt(max(t, 8000)), i.e. samcore's
``inverse_sqrt`` with peak 0.05/sqrt(8000) = 5.59e-4; batch 64 sentences, 75k steps (Perseus:
~11.5k train sentences = 180 steps per epoch, 417 epochs; EWT 196 steps, 383 epochs),
evaluation every ~1k steps; dev selects (best-val) or the last epoch is reported (``final``,
Fig. 5d). Metric: token accuracy (%). Paper (Perseus XPOS): AdamW 68.76 68.61 68.61 68.11
68.16, SAM 68.66 69.26 69.44 69.18 69.31 (gain -.10 -> 1.15); rho grid {.01 .. .5} (Table 2).

Deviations from the Flax example:
- padding: Flax pads every sentence to 256 tokens and masks nothing, so real tokens attend to
  ``<pad>`` tokens. ``attend_to_padding=True`` (presets ``paper``, ``paper-ewt``) reproduces
  that; the others trim each batch to its longest sentence and mask pad keys, so a sentence's
  tags do not depend on its batch (and compute drops several-fold).
- batches: Flax reads train in file order, never shuffled, batches crossing epochs; we shuffle
  each epoch (the suite's loop) and the last batch of an epoch may be short.
- multi-word token lines (``1-2``) and empty nodes (``1.1``) are skipped (UD's convention);
  Flax's reader would treat them as tokens. Perseus, to our knowledge, has neither.
- ties in form frequency at the 100k cap are broken alphabetically (Flax: first seen); no
  treebank here reaches the cap. The first update uses lr at step 1, Flax's uses step 0 (= 0).

    python runners/run.py --workload ud-pos-transformer --preset paper-ewt --width 0.5x,1x,2.5x
"""

from __future__ import annotations

import math
import urllib.request
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from domains.data_check import reading
from domains.language.common import (
    Vocab,
    cached_vocab,
    language_cache_dir,
    load_conllu_split,
    pad_sequences,
)
from domains.registry import register
from domains.workload import ConfigError, SizedByData, Target, TrainConfig, Workload, build_config
from samcore.width import scale_width

# Flax's input_pipeline ids, shared by the form and the tag vocabulary
PAD_ID, UNK_ID, ROOT_ID = Vocab.pad_id, Vocab.unk_id, 2
ROOT = "<root>"
SPECIALS = ("<pad>", "<unk>", ROOT)
LAYER_NORM_EPS = 1e-6  # flax.linen.LayerNorm's default (torch: 1e-5)
BIAS_INIT_STD = 1e-6  # the example's bias_init = normal(stddev=1e-6)


def _treebank_folder(data_root: Path, c: UDPOSConfig) -> Path:
    """``<data_root>/ud/<treebank>`` when its files are there; else the cache, downloading the
    release's CoNLL-U files from the treebank's GitHub repository when online."""
    names = [f"{c.file_prefix}-ud-{f}.conllu" for f in ("train", "dev", "test")]
    local = data_root / "ud" / c.treebank
    if all((local / n).is_file() for n in names):
        return local
    cached = language_cache_dir() / "ud" / c.treebank / c.ud_release
    for name in names:
        target = cached / name
        if target.is_file():
            continue
        url = (
            f"https://raw.githubusercontent.com/UniversalDependencies/{c.treebank}/"
            f"{c.ud_release}/{name}"
        )
        try:
            cached.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
            tmp = target.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(target)  # never a half-written file under the final name
        except (OSError, ValueError):
            return local  # offline or not found: the local path's MissingDataError explains
    return cached


@dataclass(frozen=True)
class UDPOSConfig(TrainConfig):
    treebank: str = "UD_English-EWT"
    """treebank folder under <data_root>/ud/"""
    file_prefix: str = "en_ewt"
    """CoNLL-U file prefix: <prefix>-ud-{train,dev,test}.conllu"""
    tag_column: str = "upos"
    """tag set to predict: upos (column 4) | xpos (column 5)"""
    ud_release: str = "r2.14"
    """UD release tag whose files are downloaded when the treebank is not on disk (online)"""
    vocab_size: int = 19_677
    """embedding rows = train forms (<= max_forms) + <pad>, <unk>, <root>; checked against
    the data (0 = taken from the train split at setup)"""
    num_tags: int = 20
    """output classes = train tags + <pad>, <unk>, <root> (Flax's tag vocabulary); checked
    against the data (0 = taken from the train split at setup)"""
    max_forms: int = 100_000
    """most frequent train forms kept in the vocabulary (Flax's max_num_forms)"""
    base_hidden: int = 256
    """model width d at 1x (grid 128..640 = 0.5x..2.5x)"""
    num_layers: int = 6
    """encoder blocks"""
    head_dim: int = 64
    """attention head size: heads = d / head_dim"""
    mlp_ratio: int = 4
    """feed-forward size = mlp_ratio * d"""
    dropout: float = 0.3
    """dropout on the embeddings, attention and MLP outputs and inside the MLP (Flax: 0.3)"""
    attention_dropout: float = 0.3
    """dropout on attention probabilities (Flax: 0.3)"""
    max_length: int = 256
    """tokens kept per sentence, ROOT included (Flax's max_len); the sinusoid table's length"""
    attend_to_padding: bool = False
    """True: Flax's math (every sentence padded to max_length, pad tokens attended); False:
    batches trimmed to their longest sentence, pad keys masked"""
    max_train_examples: int | None = None
    """use only the first N training sentences (None = all)"""
    max_eval_examples: int | None = None
    """use only the first N dev and test sentences (None = all)"""
    train_eval_examples: int = 1024
    """fixed random training sentences scored for train/loss and train/acc at each eval"""
    eval_batch_size: int = 128
    """sentences per forward pass at evaluation"""
    data_seed: int = 0
    """seed of the train/acc subset"""
    # the paper's recipe (Flax nlp_seq train.py)
    optimizer: str = "adamw"
    """base optimizer (paper: AdamW)"""
    learning_rate: float = 0.05 / math.sqrt(8000)
    """peak LR at the end of warm-up: 0.05 / sqrt(warmup_steps) as in Flax's rsqrt schedule"""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas (paper)"""
    adam_eps: float = 1e-9
    """AdamW epsilon (paper)"""
    weight_decay: float = 0.1
    """decoupled weight decay on every parameter (paper; optax.adamw without a mask)"""
    lr_schedule: str = "inverse_sqrt"
    """linear warm-up then 1/sqrt(step) decay"""
    warmup_steps: int = 8000
    """warm-up steps (paper: 8k)"""
    batch_size: int = 64
    """sentences per step (paper: 64)"""
    num_epochs: int = 383
    """passes over train: 383 x 196 EWT steps ~= the paper's 75k steps"""
    eval_every: int = 5
    """epochs between evaluations (~1k steps, as the paper)"""
    rho: float = 0.05
    """default SAM radius"""
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    """the paper's rho grid for PoS (Table 2)"""


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's treebank, tags and padding. Perseus' train split is not held offline: the
    # sizes are inferred from the paper's parameter counts (module docstring; the data check
    # names the true ones). 75k steps at 180 steps per epoch = 417 epochs; eval every ~1k steps.
    "paper": {
        "treebank": "UD_Ancient_Greek-Perseus",
        "file_prefix": "grc_perseus",
        "tag_column": "xpos",
        "vocab_size": 33_003,
        "num_tags": 1_000,
        "attend_to_padding": True,
        "num_epochs": 417,
        "eval_every": 6,
    },
    # The paper's recipe and padding on EWT (the default treebank).
    "paper-ewt": {"attend_to_padding": True},
    # CPU minutes: 2k EWT sentences, 2 layers, 3 epochs, a short warm-up and a larger peak LR;
    # e.g. --width 0.5x,1x,1.5x --optimizer both.
    "quick": {
        "max_train_examples": 2048,
        "max_eval_examples": 500,
        "train_eval_examples": 256,
        "num_layers": 2,
        "num_epochs": 3,
        "eval_every": 1,
        "warmup_steps": 32,
        "learning_rate": 1e-3,
        "max_length": 64,
    },
    # Seconds: the CLI and registry tests.
    "smoke": {
        "max_train_examples": 128,
        "max_eval_examples": 64,
        "train_eval_examples": 64,
        "num_epochs": 1,
        "eval_every": 1,
        "warmup_steps": 4,
        "learning_rate": 1e-3,
        "batch_size": 32,
        "max_length": 32,
        "num_layers": 2,
    },
}


# ---------------------------------------------------------------------- model
def sinusoid_table(length: int, d: int) -> torch.Tensor:
    """(length, d) Flax ``sinusoidal_init``: sin at even features, cos at odd ones."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * -(math.log(10000.0) / d))
    table = torch.zeros(length, d)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)
    return table


class SelfAttention(nn.Module):
    """Flax ``SelfAttention(use_bias=False)``: q, k, v and output projections without bias."""

    def __init__(self, d: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.query, self.key, self.value, self.out = (nn.Linear(d, d, bias=False) for _ in "qkvo")

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (
            p(x).view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2)  # (B, H, T, hd)
            for p in (self.query, self.key, self.value)
        )
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T) keys
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # softmax(q k^T / sqrt(hd)), dropout on the probabilities (Flax: broadcast_dropout off)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class EncoderBlock(nn.Module):
    """Flax ``Encoder1DBlock``: pre-LN attention and ELU MLP, each with dropout and residual."""

    def __init__(self, d: int, c: UDPOSConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.attn = SelfAttention(d, d // c.head_dim, c.attention_dropout)
        self.ln_mlp = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.fc_in = nn.Linear(d, c.mlp_ratio * d)
        self.fc_out = nn.Linear(c.mlp_ratio * d, d)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_attn(x), key_mask))
        h = self.drop(F.elu(self.fc_in(self.ln_mlp(x))))
        return x + self.drop(self.fc_out(h))


class Tagger(nn.Module):
    """Flax nlp_seq ``Transformer``: ids (B, T) [+ key mask (B, T), True = real] -> logits
    (B, T, num_tags)."""

    def __init__(self, vocab_size: int, num_tags: int, d: int, c: UDPOSConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        self.drop = nn.Dropout(c.dropout)
        # fixed, not a parameter; rebuilt with the model, so not in the state dict
        self.register_buffer("positions", sinusoid_table(c.max_length, d), persistent=False)
        self.blocks = nn.ModuleList(EncoderBlock(d, c) for _ in range(c.num_layers))
        self.ln_final = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(d, num_tags)
        self.apply(_init_weights)

    def forward(self, ids: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.drop(self.embed(ids)) + self.positions[: ids.shape[1]]  # Flax: dropout, then +pe
        for block in self.blocks:
            x = block(x, key_mask)
        return self.head(self.ln_final(x))


def _init_weights(m: nn.Module) -> None:
    """The example's initialisers: xavier-uniform kernels, N(0, 1e-6) biases, and Flax
    ``Embed``'s variance_scaling(1, fan_in, truncated normal): std 1/sqrt(d), cut at 2 std."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.normal_(m.bias, std=BIAS_INIT_STD)
    elif isinstance(m, nn.Embedding):
        # jax's truncated normal divides by 0.8796 (the std of N(0,1) cut at +-2) so the
        # samples end with the requested std
        std = (1.0 / m.embedding_dim) ** 0.5 / 0.87962566103423978
        nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)


# ---------------------------------------------------------------------- workload
class UDPOSTransformer(Workload):
    target = Target("acc", "max", unit="accuracy", scale="percent")
    widths = (0.5, 1.0, 1.5, 2.0, 2.5)  # d = 128, 256, 384, 512, 640

    def __init__(self, config: UDPOSConfig) -> None:
        super().__init__(config)
        self.config: UDPOSConfig = config
        if config.tag_column not in ("upos", "xpos"):
            raise ConfigError(f"tag_column must be upos or xpos, got {config.tag_column!r}")
        if config.vocab_size < 0 or config.num_tags < 0:
            raise ConfigError("vocab_size and num_tags must be >= 0 (0 = from the train split)")
        # (vocab_size, num_tags) of the loaded train split; sizes the model where the config says 0
        self.data_sizes: tuple[int, int] | None = None
        # split -> (ids (N, L), labels (N, L), lengths (N,)); ROOT first, PAD_ID after the end
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.eval_splits: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.tags: list[str] = []  # tag names by id: SPECIALS, then train tags by frequency

    def width_to_d(self, width: float) -> int:
        return scale_width(self.config.base_hidden, width, multiple_of=self.config.head_dim)

    def build_model(self, width: float) -> nn.Module:
        c = self.config
        vocab_size, num_tags, d = c.vocab_size, c.num_tags, self.width_to_d(width)
        if 0 in (vocab_size, num_tags):
            if self.data_sizes is None:
                raise SizedByData(
                    "ud-pos-transformer with vocab_size=0 or num_tags=0 is sized from the "
                    "treebank's train split: its parameters are known only once the data is "
                    "loaded (pass --vocab_size=N --num_tags=M to count without data)"
                )
            vocab_size = vocab_size or self.data_sizes[0]
            num_tags = num_tags or self.data_sizes[1]
        return Tagger(vocab_size, num_tags, d, c)

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        c = self.config
        folder = _treebank_folder(Path(data_root), c)
        how = (
            f"clone https://github.com/UniversalDependencies/{c.treebank} (or unpack a UD "
            f"release) so that {folder} holds {c.file_prefix}-ud-{{train,dev,test}}.conllu, "
            "or point --data-root / $SAM_DATA at a folder with ud/<treebank>/"
        )
        with reading() as files:  # the files behind the data, stored with each run
            splits = {
                s: load_conllu_split(folder / f"{c.file_prefix}-ud-{f}.conllu", c.tag_column, how)
                for s, f in (("train", "train"), ("val", "dev"), ("test", "test"))
            }
        self.data_files = tuple(files)
        # Vocabularies from the whole train split (never a subset, never dev/test), as Flax's
        # create_vocabs: forms by frequency (no minimum count), tags by frequency.
        by_freq = cached_vocab(f"ud-{c.file_prefix}", [w for w, _ in splits["train"]], 1)
        vocab = Vocab([ROOT, *[w for w in by_freq.itos[2:] if w != ROOT][: c.max_forms]])
        tag_counts = Counter(t for _, ts in splits["train"] for t in ts)
        self.tags = [*SPECIALS, *(t for t, _ in tag_counts.most_common() if t not in SPECIALS)]
        self._check_sizes(len(vocab), len(self.tags))
        tag_id = {t: i for i, t in enumerate(self.tags)}
        for split, sents in splits.items():
            limit = c.max_train_examples if split == "train" else c.max_eval_examples
            sents = sents[:limit]
            ids = pad_sequences(
                [[ROOT_ID, *vocab.encode(w)] for w, _ in sents], PAD_ID, c.max_length
            )
            targets = [[ROOT_ID, *(tag_id.get(t, UNK_ID) for t in ts)] for _, ts in sents]
            labels = pad_sequences(targets, PAD_ID, c.max_length)
            lengths = (ids != PAD_ID).sum(1)  # token ids are never PAD_ID
            self.data[split] = (ids.to(device), labels.to(device), lengths.to(device))
        ids, labels, lengths = self.data["train"]
        gen = torch.Generator().manual_seed(c.data_seed)
        pick = torch.randperm(len(ids), generator=gen)[: c.train_eval_examples].to(device)
        self.eval_splits = {"train": (ids[pick], labels[pick], lengths[pick])}
        self.eval_splits.update({k: v for k, v in self.data.items() if k != "train"})

    def _check_sizes(self, vocab_size: int, num_tags: int) -> None:
        """The model is sized from the config (``--list`` needs no data); the data must agree,
        else one error with the overrides that make it agree."""
        c = self.config
        self.data_sizes = (vocab_size, num_tags)
        if (c.vocab_size or vocab_size, c.num_tags or num_tags) != (vocab_size, num_tags):
            raise ConfigError(
                f"{c.treebank} train has {vocab_size} form-vocabulary entries and {num_tags} "
                f"{c.tag_column.upper()} classes (both with <pad>, <unk>, <root>) but the config "
                f"says vocab_size={c.vocab_size}, num_tags={c.num_tags}; pass "
                f"--vocab_size={vocab_size} --num_tags={num_tags} (the model is sized by the "
                "config, so that its parameters can be counted without data)"
            )

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data["train"][0]) / self.config.batch_size)

    def _batch(
        self, ids: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """{"ids", "labels": (B, T)} and, unless attending to padding, "key_mask" (B, T)."""
        if self.config.attend_to_padding:  # Flax: static padding to max_length, no mask
            T = self.config.max_length
            pad = (0, T - ids.shape[1])
            return {
                "ids": F.pad(ids, pad, value=PAD_ID),
                "labels": F.pad(labels, pad, value=PAD_ID),
            }
        T = int(lengths.max())  # trim to the batch's longest sentence
        mask = torch.arange(T, device=ids.device)[None, :] < lengths[:, None]
        return {"ids": ids[:, :T], "labels": labels[:, :T], "key_mask": mask}

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        ids, labels, lengths = self.data["train"]
        order = torch.randperm(len(ids), generator=generator).to(ids.device)
        for idx in order.split(self.config.batch_size):
            yield self._batch(ids[idx], labels[idx], lengths[idx])

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(batch["ids"], batch.get("key_mask"))
        labels = batch["labels"]
        # Flax: mean over targets > 0 (ROOT and <unk> targets included, padding not)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD_ID)
        real = labels != PAD_ID
        acc = ((logits.argmax(-1) == labels) & real).sum() / real.sum().clamp(min=1)
        return loss, {"acc": acc.detach() * 100}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Collection[str] | None = None) -> dict[str, float]:
        out = {}
        bs = self.config.eval_batch_size
        for split, (ids, labels, lengths) in self.eval_splits.items():
            if splits is not None and split not in splits:
                continue
            order = lengths.argsort()  # similar lengths together: little padding
            loss_sum, correct, n_tokens, word_correct = 0.0, 0, 0, 0
            for idx in order.split(bs):
                b = self._batch(ids[idx], labels[idx], lengths[idx])
                logits = model(b["ids"], b.get("key_mask"))
                y = b["labels"]
                loss_sum += F.cross_entropy(
                    logits.flatten(0, 1), y.flatten(), ignore_index=PAD_ID, reduction="sum"
                ).item()
                hit = (logits.argmax(-1) == y) & (y != PAD_ID)
                correct += int(hit.sum())
                word_correct += int(hit[:, 1:].sum())  # position 0 is ROOT
                n_tokens += int((y != PAD_ID).sum())
            n_sents = len(ids)
            out[f"{split}/loss"] = loss_sum / max(n_tokens, 1)
            out[f"{split}/acc"] = 100.0 * correct / max(n_tokens, 1)
            out[f"{split}/word_acc"] = 100.0 * word_correct / max(n_tokens - n_sents, 1)
        return out


@register("ud-pos-transformer", domain="language", presets=tuple(PRESETS))
def ud_pos_transformer(preset: str = "quick", **overrides: Any) -> UDPOSTransformer:
    """UD POS tagging, the Flax nlp_seq Transformer from scratch, token accuracy (paper Fig. 1)."""
    return UDPOSTransformer(build_config(UDPOSConfig, PRESETS, preset, **overrides))
