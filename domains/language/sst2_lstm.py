"""SST-2 sentiment with a bidirectional LSTM and attention, the paper's Fig. 1 language row
(Shin et al., UAI 2025, appendix A; numbers in ../shared/PAPERS.md).

Task: binary sentiment of GLUE SST-2 sentences. Data: ``<data_root>/glue/SST-2/`` train.tsv
(67,349 phrases), dev.tsv (872, model selection) and test-labeled.tsv (1,821, reported at the
best dev epoch); HF ``datasets`` ``glue/sst2`` when online (train/dev only). Word vocabulary
from train only, words seen >= 3 times: 13,519 words + <pad> + <unk> = 13,521 (the paper's
"~13.5k"), deterministic and cached. Sentences truncated to 60 tokens (the longest has 52).

Model: embedding (e = hidden*300/256) -> dropout 0.5 -> one-layer BiLSTM (hidden per
direction) over the packed sequence -> additive attention (u_t = tanh(W h_t + b), score v.u_t,
softmax over real tokens only) -> tanh MLP (2h -> 2h) -> 2 logits; word dropout 0.1 replaces
training tokens by <unk>. The paper gives only "BiLSTM with attention" and its counts; its
counts fit emb + BiLSTM + ~9.2h^2 extra parameters, which our attention + MLP (8h^2) matches
to within 2.5%:

    hidden           32      64      128     256     384      512
    width            0.25x   0.5x    1x      2x      3x       4x
    params (ours)    540k    1.12M   2.45M   5.72M   9.83M    14.78M
    params (paper)   0.53M   1.1M    2.5M    5.8M    10.0M    15.1M

Width "1x" = hidden 128, the middle of the grid. Recipe: SGD momentum 0.8, lr 0.1 constant,
wd 3e-6, batch 64, 30 epochs, best dev epoch. Metric accuracy (%). Paper: SGD 84.90 85.55
85.55 84.94 85.51 85.13, SAM 85.13 85.82 86.05 86.16 86.51 86.28 (gain .23 -> 1.15); too large
a rho collapses SAM to ~52%.

    python runners/run.py --domain language --width 0.25x,1x,4x --optimizer both --preset paper
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from domains.language.common import Vocab, cached_vocab, check_vocab_size, flip_labels, load_sst2, pad_sequences
from domains.registry import register
from domains.workload import Target, TrainConfig, Workload, build_config
from samcore.width import scale_width


@dataclass(frozen=True)
class SST2LSTMConfig(TrainConfig):
    base_hidden: int = 128
    """LSTM hidden units per direction at width 1x (grid 32..512 = 0.25x..4x)"""
    base_embed: int = 150
    """embedding size at width 1x (hidden * 300/256, as the paper scales it)"""
    vocab_size: int = 13_521
    """embedding rows = words seen >= min_count times in train + <pad> + <unk>; checked
    against the data (the model is sized from the config so --list needs no data)"""
    min_count: int = 3
    """minimum training-set count for a word to enter the vocabulary"""
    max_length: int = 60
    """tokens kept per sentence"""
    embed_dropout: float = 0.5
    """dropout on the word embeddings"""
    word_dropout: float = 0.1
    """probability that a training token is replaced by <unk>"""
    label_noise: float = 0.0
    """fraction of training labels flipped (exact, chosen by data_seed); in [0, 1)"""
    data_seed: int = 0
    """seed of the label noise and the subsets; the same for every training seed"""
    max_train_examples: int | None = None
    """use only the first N training examples (None = all 67,349)"""
    max_eval_examples: int | None = None
    """use only the first N dev and test examples (None = all)"""
    train_eval_examples: int = 4096
    """fixed random training examples scored for train/loss and train/acc at each eval"""
    eval_batch_size: int = 512
    """examples per forward pass at evaluation"""
    # the paper's recipe
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.8
    weight_decay: float = 3e-6
    batch_size: int = 64
    num_epochs: int = 30
    rho: float = 0.05
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # CPU minutes: 8k training phrases, 3 epochs, e.g. --width 0.25x,0.5x,1x --optimizer both.
    # The paper's SGD (lr 0.1) barely leaves chance level in so few steps (measured: ~55-60%
    # dev after 384 steps at 0.25x, whether lr 0.1, 0.5 or 1.0), so quick uses Adam lr 1e-3
    # as its base optimizer (~80% dev after 2 epochs at 0.25x): a CPU check of base vs SAM
    # across widths, not the paper's recipe.
    "quick": {"max_train_examples": 8192, "num_epochs": 3, "train_eval_examples": 2048,
              "optimizer": "adam", "learning_rate": 1e-3, "momentum": 0.0},
    # Seconds: the CLI and registry tests.
    "smoke": {"max_train_examples": 256, "max_eval_examples": 128, "train_eval_examples": 128,
              "num_epochs": 1, "max_length": 20, "batch_size": 32},
}


class BiLSTMAttention(nn.Module):
    """(B, T) token ids + (B,) lengths -> (B, num_classes) logits; padding never attended."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, num_classes: int = 2,
                 embed_dropout: float = 0.5, word_dropout: float = 0.1) -> None:
        super().__init__()
        self.word_dropout = word_dropout
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=Vocab.pad_id)
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.attn = nn.Linear(2 * hidden, 2 * hidden)  # u_t = tanh(W h_t + b)
        self.attn_score = nn.Linear(2 * hidden, 1, bias=False)  # score_t = v . u_t
        self.fc = nn.Linear(2 * hidden, 2 * hidden)
        self.out = nn.Linear(2 * hidden, num_classes)
        self._init_weights(hidden)

    def _init_weights(self, hidden: int) -> None:
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)  # small, as is usual for random word vectors
        with torch.no_grad():
            self.embed.weight[Vocab.pad_id].zero_()
        bound = 1 / math.sqrt(hidden)  # PyTorch's LSTM default, written out
        for p in self.lstm.parameters():
            nn.init.uniform_(p, -bound, bound)
        for layer in (self.attn, self.attn_score, self.fc, self.out):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad = ids == Vocab.pad_id  # (B, T)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(ids.shape, device=ids.device) < self.word_dropout
            ids = torch.where(drop & ~pad, torch.full_like(ids, Vocab.unk_id), ids)
        x = self.embed_dropout(self.embed(ids))  # (B, T, e)
        # Packing makes each direction stop at the sentence's own end: the backward LSTM
        # starts at the last real token, so padding cannot leak into any state.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=ids.shape[1])  # (B, T, 2h)
        scores = self.attn_score(torch.tanh(self.attn(h))).squeeze(-1)  # (B, T)
        alpha = scores.masked_fill(pad, float("-inf")).softmax(dim=-1)
        context = torch.einsum("bt,btc->bc", alpha, h)  # (B, 2h)
        return self.out(torch.tanh(self.fc(context)))


class SST2LSTM(Workload):
    target = Target("acc", "max")
    widths = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0)  # hidden 32, 64, 128, 256, 384, 512

    def __init__(self, config: SST2LSTMConfig) -> None:
        super().__init__(config)
        self.config: SST2LSTMConfig = config
        flip_labels([], config.label_noise, 2, 0)  # validates the rate before any data is read
        # split -> (ids (N, L), lengths (N,), labels (N,))
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def build_model(self, width: float) -> nn.Module:
        c = self.config
        return BiLSTMAttention(c.vocab_size, scale_width(c.base_embed, width),
                               scale_width(c.base_hidden, width), 2, c.embed_dropout, c.word_dropout)

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        c = self.config
        splits = load_sst2(data_root)
        # The vocabulary always comes from the whole training split (never dev/test, never a
        # subset), so its size, and with it the model, is the same for every preset.
        vocab = cached_vocab("sst2", splits["train"][0], c.min_count)
        check_vocab_size(f"the SST-2 vocabulary (min_count={c.min_count})", c.vocab_size, len(vocab))
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
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = {}
        bs = self.config.eval_batch_size
        for split, (ids, lengths, labels) in self.eval_splits.items():
            loss_sum, correct = 0.0, 0
            for s in range(0, len(labels), bs):
                b_len = lengths[s : s + bs]
                logits = model(ids[s : s + bs, : int(b_len.max())], b_len)
                loss_sum += F.cross_entropy(logits, labels[s : s + bs], reduction="sum").item()
                correct += (logits.argmax(-1) == labels[s : s + bs]).sum().item()
            out[f"{split}/loss"] = loss_sum / len(labels)
            out[f"{split}/acc"] = 100.0 * correct / len(labels)
        return out


@register("sst2-lstm", domain="language", presets=tuple(PRESETS), default=True)
def sst2_lstm(preset: str = "quick", **overrides: Any) -> SST2LSTM:
    """SST-2 sentiment, BiLSTM with attention, accuracy (paper Fig. 1, language)."""
    return SST2LSTM(build_config(SST2LSTMConfig, PRESETS, preset, **overrides))
