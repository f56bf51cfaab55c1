"""ud-pos-transformer: padding masks, parameter counts, the held EWT treebank, Perseus' error."""

from __future__ import annotations

import pytest
import torch

from domains import MissingDataError, create_workload
from samcore import count_params

pytestmark = pytest.mark.language


def test_padding_does_not_change_the_tags():
    w = create_workload("ud-pos-transformer", "smoke", vocab_size=40, num_tags=5)
    torch.manual_seed(0)
    model = w.build_model(0.5).eval()
    alone = model(input_ids=torch.tensor([[4, 7, 9]]), attention_mask=torch.ones(1, 3)).logits
    ids = torch.tensor([[4, 7, 9, 0, 0, 0], [5, 6, 0, 0, 0, 0]])  # 0 = <pad>
    mask = (ids != 0).long()
    batched = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(alone[0], batched[0, :3], rtol=1e-4, atol=1e-5)
    # and the loss ignores padded positions (label -100)
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor([[1, 2, 3, -100, -100, -100], [0, 4, -100, -100, -100, -100]]),
    }
    loss, metrics = w.loss(model, batch)
    assert torch.isfinite(loss) and 0 <= float(metrics["acc"]) <= 100


def test_parameter_counts_increase_with_width_and_match_the_paper_preset():
    w = create_workload("ud-pos-transformer", "paper")
    with torch.device("meta"):
        counts = [count_params(w.build_model(x)) for x in w.widths]
    assert all(a < b for a, b in zip(counts, counts[1:])), counts
    for ours, theirs in zip(counts, [5.5e6, 13.5e6, 23.7e6, 36.3e6, 51.3e6]):
        assert abs(ours / theirs - 1) < 0.01, (ours, theirs)
    heads = w.build_model(2.5).config.num_attention_heads
    assert heads == 10  # d 640 / 64


def test_real_ewt_treebank(data_root):
    from domains.language.common import load_conllu_split

    folder = data_root / "ud" / "UD_English-EWT"
    sizes = {
        s: len(load_conllu_split(folder / f"en_ewt-ud-{s}.conllu", "upos", ""))
        for s in ("train", "dev", "test")
    }
    assert sizes == {"train": 12_544, "dev": 2_001, "test": 2_077}
    w = create_workload(
        "ud-pos-transformer", "paper-ewt", max_train_examples=500, max_eval_examples=50
    )
    w.setup_data(data_root, torch.device("cpu"))  # vocab 19,676 and 17 tags: checks pass
    assert w.tags == [
        "ADJ",
        "ADP",
        "ADV",
        "AUX",
        "CCONJ",
        "DET",
        "INTJ",
        "NOUN",
        "NUM",
        "PART",
        "PRON",
        "PROPN",
        "PUNCT",
        "SCONJ",
        "SYM",
        "VERB",
        "X",
    ]
    ids, labels, lengths = w.data["train"]
    assert ids.shape[0] == 500 and bool(((labels != -100) == (ids != 0)).all())
    batch = next(w.train_batches(0, torch.Generator().manual_seed(0)))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape


def test_paper_preset_without_perseus_names_the_file(tmp_path):
    w = create_workload("ud-pos-transformer", "paper")
    with pytest.raises(MissingDataError) as err:
        w.setup_data(tmp_path, torch.device("cpu"))
    msg = str(err.value)
    assert "grc_perseus-ud-train.conllu" in msg and "UD_Ancient_Greek-Perseus" in msg
    assert str(tmp_path) in msg and "github.com/UniversalDependencies" in msg


def test_treebank_missing_offline_is_one_clear_error(tmp_path, monkeypatch):
    """No local files and no network: MissingDataError names the file, the folder and how."""
    import urllib.request

    from domains import MissingDataError, create_workload

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    workload = create_workload("ud-pos-transformer", "smoke")
    with pytest.raises(MissingDataError, match=r"en_ewt-ud-train\.conllu.*github\.com"):
        workload.setup_data(tmp_path / "data", torch.device("cpu"))
    assert not any((tmp_path / "cache").rglob("*.conllu"))


def test_treebank_is_downloaded_into_the_cache_when_online(tmp_path, monkeypatch):
    """Online path: the release's files are fetched from GitHub into the cache, then read."""
    import io
    import os
    import urllib.request
    from pathlib import Path

    from domains import create_workload

    if not os.environ.get("SAM_DATA"):
        pytest.skip("SAM_DATA not set (offline data folder)")
    held = Path(os.environ["SAM_DATA"]) / "ud" / "UD_English-EWT"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fetched = []

    def fake_github(url, timeout):
        fetched.append(url)
        return io.BytesIO((held / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_github)
    workload = create_workload("ud-pos-transformer", "smoke")
    workload.setup_data(tmp_path / "empty-data-root", torch.device("cpu"))
    assert len(fetched) == 3 and all(
        "UniversalDependencies/UD_English-EWT/r2.14/" in u for u in fetched
    )
    assert len(list((tmp_path / "cache").rglob("*.conllu"))) == 3
