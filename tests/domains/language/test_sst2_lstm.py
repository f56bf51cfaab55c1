"""sst2-lstm: padding masks, parameter counts per width, the held SST-2 data."""

from __future__ import annotations

import pytest
import torch

from domains import ConfigError, create_workload, default_workload
from samcore import count_params

pytestmark = pytest.mark.language


def test_is_the_language_domain_default():
    assert default_workload("language") == "sst2-lstm"


def test_padding_does_not_change_the_prediction():
    w = create_workload("sst2-lstm", "smoke", vocab_size=50)
    torch.manual_seed(0)
    model = w.build_model(0.25).eval()
    ids = torch.tensor([[5, 9, 13, 2]])
    padded = torch.tensor([[5, 9, 13, 2, 0, 0, 0], [7, 8, 0, 0, 0, 0, 0]])  # 0 = <pad>
    alone = model(ids, torch.tensor([4]))
    batched = model(padded, torch.tensor([4, 2]))
    torch.testing.assert_close(alone[0], batched[0], rtol=1e-5, atol=1e-6)


def test_parameter_counts_increase_with_width_and_track_the_paper():
    w = create_workload("sst2-lstm", "paper")
    with torch.device("meta"):
        counts = [count_params(w.build_model(x)) for x in w.widths]
    assert all(a < b for a, b in zip(counts, counts[1:])), counts
    paper = [0.53e6, 1.1e6, 2.5e6, 5.8e6, 10.0e6, 15.1e6]  # PAPERS.md, rounded
    for ours, theirs in zip(counts, paper):
        assert abs(ours / theirs - 1) < 0.03, (ours, theirs)


def test_bad_label_noise_is_a_clear_error():
    with pytest.raises(ConfigError, match="label_noise"):
        create_workload("sst2-lstm", "smoke", label_noise=1.0)


def test_real_sst2_splits_vocabulary_and_label_noise(data_root):
    from domains.language.common import load_sst2

    splits = load_sst2(data_root)
    assert {k: len(v[1]) for k, v in splits.items()} == {"train": 67_349, "val": 872, "test": 1_821}
    w = create_workload("sst2-lstm", "paper", label_noise=0.2, max_train_examples=1000)
    w.setup_data(data_root, torch.device("cpu"))  # vocab_size check passes: 13,521
    ids, lengths, labels = w.data["train"]
    clean = torch.tensor(splits["train"][1][:1000])
    assert ids.shape[0] == 1000 and int((labels != clean).sum()) == 200  # exact rate, train only
    assert torch.equal(w.data["val"][2], torch.tensor(splits["val"][1]))
    assert int(lengths.max()) <= 60 and bool((ids[:, 0] != 0).all())
    # The vocabulary comes from train alone: a dev-only word is unknown.
    from domains.language.common import cached_vocab

    vocab = cached_vocab("sst2", splits["train"][0], 3)
    train_words = {t for s in splits["train"][0] for t in s}
    dev_only = next(t for s in splits["val"][0] for t in s if t not in train_words)
    assert vocab.encode([dev_only]) == [vocab.unk_id]


@pytest.mark.parametrize("name", ["sst2-lstm", "sst2-transformer"])
def test_evaluate_equals_one_sentence_at_a_time(name):
    """Length-sorted, trimmed eval batches give each sentence's own unpadded loss and
    prediction (computed here one by one)."""
    import torch.nn.functional as F

    w = create_workload(name, "smoke", vocab_size=50, eval_batch_size=3)
    torch.manual_seed(0)
    model = w.build_model(0.25).eval()
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 12, (10,), generator=g)
    ids = torch.zeros(10, 12, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(2, 50, (int(n),), generator=g)
    labels = torch.randint(0, 2, (10,), generator=g)
    w.eval_splits = {"val": (ids, lengths, labels)}
    got = w.evaluate(model)
    with torch.no_grad():
        logits = torch.cat(
            [model(ids[i : i + 1, : int(n)], lengths[i : i + 1]) for i, n in enumerate(lengths)]
        )
    assert got["val/loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert got["val/acc"] == pytest.approx(
        100.0 * (logits.argmax(-1) == labels).float().mean().item()
    )
