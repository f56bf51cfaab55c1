"""sst2-transformer: padding masks, widths, a few training steps on the smoke preset."""

from __future__ import annotations

import pytest
import torch

from domains import create_workload
from samcore import count_params

pytestmark = pytest.mark.language


def test_padding_does_not_change_the_prediction():
    w = create_workload("sst2-transformer", "smoke", vocab_size=50)
    torch.manual_seed(0)
    model = w.build_model(0.25).eval()
    alone = model(torch.tensor([[5, 9, 13]]), torch.tensor([3]))
    padded = model(torch.tensor([[5, 9, 13, 0, 0], [7, 0, 0, 0, 0]]), torch.tensor([3, 1]))
    torch.testing.assert_close(alone[0], padded[0], rtol=1e-4, atol=1e-5)


def test_widths_scale_heads_and_parameters():
    w = create_workload("sst2-transformer", "paper")
    with torch.device("meta"):
        models = [w.build_model(x) for x in w.widths]
    counts = [count_params(m) for m in models]
    assert all(a < b for a, b in zip(counts, counts[1:])), counts
    assert [m.encoder.config.num_attention_heads for m in models] == [1, 2, 4, 6, 8]
    assert [m.encoder.config.hidden_size for m in models] == [64, 128, 256, 384, 512]
