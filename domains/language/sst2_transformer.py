"""SST-2 sentiment with a Transformer encoder trained from scratch (not in the paper: our
design, to test the paper's claim on a second SST-2 architecture).

Task and data as ``sst2-lstm`` (GLUE SST-2: 67,349 train phrases, dev 872 selects the epoch,
test-labeled 1,821 reported there; the same train-only word vocabulary, 13,521 entries at
min count 3; sentences cut to 60 tokens; optional symmetric label noise on train).

Model: Hugging Face ``BertModel`` built from a ``BertConfig`` (no pretrained weights, no
pooler): 4 post-LN layers of width d, MLP 4d, d/64 heads, learned positions, dropout 0.1,
BERT's N(0, 0.02) init; the sentence vector is the mean of the final hidden states over real
tokens (the attention mask hides padding from every layer and from the mean), then dropout
and a linear 2-way head. Width 1x = d 256; grid d 64, 128, 256, 384, 512 = 0.25x..2x
(rounded to multiples of 64 so heads stay 64 wide):

    d          64       128      256      384      512
    params     1.07M    2.53M    6.64M    12.3M    19.6M

Recipe (ours): AdamW (0.9, 0.98, eps 1e-9), lr 5e-4 with 1,000 warm-up steps then linear decay
to 0, wd 0.1 (not on biases/LayerNorm), batch 64, 15 epochs (15.8k steps), best dev epoch.
Metric accuracy (%). No reference number: from-scratch Transformers on SST-2 usually land
around 78-82%, below the BiLSTM's ~85%.

    python runners/run.py --workload sst2-transformer --width 0.25x,1x,2x --optimizer both
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from domains.language.common import SST2Classification, SST2DataConfig, Vocab
from domains.registry import register
from domains.workload import build_config
from samcore.width import scale_width


@dataclass(frozen=True)
class SST2TransformerConfig(SST2DataConfig):
    base_hidden: int = 256
    """model width d at 1x (grid 64..512 = 0.25x..2x)"""
    num_layers: int = 4
    """encoder layers"""
    head_dim: int = 64
    """attention head size: heads = d / head_dim"""
    mlp_ratio: int = 4
    """feed-forward size = mlp_ratio * d"""
    dropout: float = 0.1
    """dropout on embeddings, residual branches and the pooled sentence vector"""
    attention_dropout: float = 0.1
    """dropout on attention probabilities"""
    max_positions: int = 64
    """learned position embeddings (>= max_length)"""
    # our recipe
    optimizer: str = "adamw"
    """base optimizer"""
    learning_rate: float = 5e-4
    """peak learning rate"""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas"""
    adam_eps: float = 1e-9
    """AdamW epsilon"""
    weight_decay: float = 0.1
    """decoupled weight decay (matrices and embeddings only)"""
    decay_norm_and_bias: bool = False
    """biases and LayerNorm parameters are not decayed"""
    lr_schedule: str = "linear"
    """linear warm-up, then linear decay to 0"""
    warmup_steps: int = 1000
    """warm-up steps"""
    batch_size: int = 64
    """sentences per step"""
    num_epochs: int = 15
    """passes over the training set"""
    rho: float = 0.05
    """default SAM radius"""
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    """rho grid: the paper's SST-2 grid (Table 2), as the BiLSTM's"""


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # CPU minutes: 8k training phrases, 3 epochs; e.g. --width 0.25x,0.5x,1x --optimizer both.
    "quick": {
        "max_train_examples": 8192,
        "num_epochs": 3,
        "train_eval_examples": 2048,
        "warmup_steps": 40,
    },
    # Seconds: the CLI and registry tests.
    "smoke": {
        "max_train_examples": 256,
        "max_eval_examples": 128,
        "train_eval_examples": 128,
        "num_epochs": 1,
        "max_length": 20,
        "batch_size": 32,
        "warmup_steps": 2,
        "num_layers": 2,
    },
}


class TransformerClassifier(nn.Module):
    """(B, T) token ids + (B,) lengths -> (B, num_classes) logits, padding masked."""

    def __init__(self, c: SST2TransformerConfig, d: int, num_classes: int = 2) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        if c.max_positions < c.max_length:
            raise ValueError(f"max_positions {c.max_positions} < max_length {c.max_length}")
        config = BertConfig(
            vocab_size=c.vocab_size,
            hidden_size=d,
            num_hidden_layers=c.num_layers,
            num_attention_heads=d // c.head_dim,
            intermediate_size=c.mlp_ratio * d,
            hidden_dropout_prob=c.dropout,
            attention_probs_dropout_prob=c.attention_dropout,
            max_position_embeddings=c.max_positions,
            type_vocab_size=1,
            pad_token_id=Vocab.pad_id,
            initializer_range=0.02,  # BERT's init: N(0, 0.02)
        )
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(d, num_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]  # (B, T)
        h = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, T, d)
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)  # mean over real tokens only
        return self.head(self.dropout(pooled))


class SST2Transformer(SST2Classification):
    widths = (0.25, 0.5, 1.0, 1.5, 2.0)  # d = 64, 128, 256, 384, 512

    def __init__(self, config: SST2TransformerConfig) -> None:
        super().__init__(config)
        self.config: SST2TransformerConfig = config

    def build_model(self, width: float) -> nn.Module:
        c = self.config
        return TransformerClassifier(c, scale_width(c.base_hidden, width, multiple_of=c.head_dim))


@register("sst2-transformer", domain="language", presets=tuple(PRESETS))
def sst2_transformer(preset: str = "quick", **overrides: Any) -> SST2Transformer:
    """SST-2 sentiment, Transformer encoder from scratch, accuracy (our design)."""
    return SST2Transformer(build_config(SST2TransformerConfig, PRESETS, preset, **overrides))
