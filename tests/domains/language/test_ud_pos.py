"""ud-pos-transformer = the Flax nlp_seq example in torch: its forward math against a reference
written from Flax's models.py, its initialisers, its parameter count against a hand count and
the paper's, its ROOT/padding/unknown handling, the Perseus-format paper preset end to end, the
held EWT treebank, and the data errors."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from domains import ConfigError, MissingDataError, SizedByData, create_workload
from samcore import SAM, WidthError, count_params, train_step
from tests.conftest import run_cli

pytestmark = pytest.mark.language

REPO = Path(__file__).resolve().parents[3]
PAPER_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # PAPERS.md, Table 2 (PoS and SST-2)


# ---------------------------------------------------------------------- model
def flax_reference(model: nn.Module, ids: torch.Tensor, key_mask, heads: int) -> torch.Tensor:
    """Flax nlp_seq ``Transformer.__call__`` (eval mode) written out op by op from models.py,
    reading the torch model's weights: embed + sinusoid, pre-LN blocks with bias-free
    attention and an ELU MLP, final LayerNorm, Dense."""
    p = dict(model.named_parameters())
    d = p["embed.weight"].shape[1]
    B, T = ids.shape
    # sinusoidal_init: pe[:, 0::2] = sin(pos * div), pe[:, 1::2] = cos(pos * div)
    angle = torch.arange(T)[:, None] / 10000 ** (torch.arange(0, d, 2) / d)  # (T, d/2)
    pe = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(T, d)
    x = p["embed.weight"][ids] + pe

    def ln(x, name):
        return F.layer_norm(x, (d,), p[f"{name}.weight"], p[f"{name}.bias"], eps=1e-6)

    n_layers = len({k.split(".")[1] for k in p if k.startswith("blocks.")})
    for i in range(n_layers):
        b = f"blocks.{i}."
        h = ln(x, b + "ln_attn")
        q, k, v = (
            (h @ p[b + f"attn.{n}.weight"].T).reshape(B, T, heads, d // heads).transpose(1, 2)
            for n in ("query", "key", "value")
        )
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)  # (B, H, T, T)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, d)
        x = x + y @ p[b + "attn.out.weight"].T
        h = ln(x, b + "ln_mlp")
        h = F.elu(h @ p[b + "fc_in.weight"].T + p[b + "fc_in.bias"])
        x = x + h @ p[b + "fc_out.weight"].T + p[b + "fc_out.bias"]
    return ln(x, "ln_final") @ p["head.weight"].T + p["head.bias"]


@pytest.mark.parametrize("attend_to_padding", [False, True])
def test_forward_is_the_flax_example_math(attend_to_padding):
    w = create_workload(
        "ud-pos-transformer",
        "smoke",
        vocab_size=40,
        num_tags=7,
        attend_to_padding=attend_to_padding,
    )
    torch.manual_seed(0)
    model = w.build_model(1.0).eval()  # d 256, 4 heads, 2 layers (smoke)
    ids = torch.tensor([[2, 4, 7, 9, 0, 0], [2, 5, 6, 0, 0, 0]])
    mask = None if attend_to_padding else ids != 0
    with torch.no_grad():
        ours = model(ids, mask)
        ref = flax_reference(model, ids, mask, heads=4)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_masked_padding_does_not_change_the_tags_and_flax_padding_does():
    w = create_workload("ud-pos-transformer", "smoke", vocab_size=40, num_tags=7)
    torch.manual_seed(0)
    model = w.build_model(0.5).eval()
    alone = model(torch.tensor([[2, 7, 9]]), torch.ones(1, 3, dtype=torch.bool))
    ids = torch.tensor([[2, 7, 9, 0, 0, 0], [2, 6, 0, 0, 0, 0]])  # 0 = <pad>
    torch.testing.assert_close(alone[0], model(ids, ids != 0)[0, :3], rtol=1e-4, atol=1e-5)
    # Flax attends to its padding: without the mask the real tokens' logits move
    assert not torch.allclose(alone[0], model(ids)[0, :3], atol=1e-3)


def test_initialisation_is_the_examples():
    """xavier-uniform kernels (each d x d projection on its own), N(0, 1e-6) biases, Flax
    Embed's truncated normal with std 1/sqrt(d), LayerNorm 1/0."""
    w = create_workload("ud-pos-transformer", "smoke", vocab_size=2000, num_tags=7)
    torch.manual_seed(0)
    model = w.build_model(1.0)
    d = 256
    for name, fan_in, fan_out in [
        ("blocks.0.attn.query.weight", d, d),
        ("blocks.0.attn.out.weight", d, d),
        ("blocks.1.fc_in.weight", d, 4 * d),
        ("blocks.1.fc_out.weight", 4 * d, d),
    ]:
        weight = dict(model.named_parameters())[name].detach()
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert weight.abs().max() <= bound
        assert abs(weight.std() / (bound / math.sqrt(3)) - 1) < 0.03, name
    emb = model.embed.weight.detach()
    assert abs(emb.std() * math.sqrt(d) - 1) < 0.02
    assert emb.abs().max() <= 2 / 0.87962566103423978 / math.sqrt(d) + 1e-6  # cut at 2 std
    for name, b in model.named_parameters():
        if name.endswith("bias") and "ln" not in name:
            assert 0 < b.abs().max() < 1e-5, name
    assert bool((model.ln_final.weight == 1).all() and (model.ln_final.bias == 0).all())
    assert model.ln_final.eps == 1e-6


def hand_count(d: int, vocab: int, tags: int, layers: int = 6) -> int:
    """Counted from Flax's models.py module by module."""
    embed = vocab * d
    attention = 4 * d * d  # query, key, value, out kernels; use_bias=False
    mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)  # Dense(4d) and Dense(d), with biases
    layer_norms = 2 * (2 * d)  # scale and bias, before attention and before the MLP
    final = 2 * d + (d * tags + tags)  # final LayerNorm, Dense to the tags
    return embed + layers * (attention + mlp + layer_norms) + final


def test_parameter_counts_match_a_hand_count_and_the_paper():
    w = create_workload("ud-pos-transformer", "paper")
    with torch.device("meta"):  # as --list: from the config alone
        counts = [count_params(w.build_model(x)) for x in w.widths]
        heads = w.build_model(2.5).blocks[0].attn.num_heads
    ds = [128, 256, 384, 512, 640]
    assert counts == [hand_count(d, 33_003, 1_000) for d in ds]
    # the paper's 5.54 / 13.44 / 23.70 / 36.31 / 51.29M (PAPERS.md)
    assert [round(n / 1e6, 2) for n in counts] == [5.54, 13.44, 23.70, 36.31, 51.29]
    assert counts[0] == 72 * 128**2 + (33_003 + 1_000 + 56) * 128 + 1_000  # 5,540,200
    assert heads == 10  # d 640 / 64


# ---------------------------------------------------------------------- Perseus-format data
TRAIN = """\
# newdoc id = generated
# sent_id = a
# text = ἐρᾷ μὲν οὐρανὸς
1\tἐρᾷ\tἐράω\tVERB\tv3spia---\t_\t0\troot\t_\t_
2\tμὲν\tμέν\tADV\td--------\t_\t1\tadvmod\t_\t_
3\tοὐρανὸς\tοὐρανός\tNOUN\tn-s---mn-\t_\t1\tnsubj\t_\t_

# sent_id = b
1-2\tκἀγώ\t_\t_\t_\t_\t_\t_\t_\t_
1\tκαί\tκαί\tCCONJ\tc--------\t_\t3\tcc\t_\t_
2\tἐγώ\tἐγώ\tPRON\tp1s---mn-\t_\t3\tnsubj\t_\t_
3\tἐρᾷ\tἐράω\tVERB\tv3spia---\t_\t0\troot\t_\t_
3.1\tφάσμα\tφάσμα\tNOUN\tn-s---nn-\t_\t_\t_\t3:conj\t_
4\t·\t·\tPUNCT\tu--------\t_\t3\tpunct\t_\t_

# sent_id = c
1\tοὐρανὸς\tοὐρανός\tNOUN\tn-s---mn-\t_\t0\troot\t_\t_
2\tμὲν\tμέν\tADV\td--------\t_\t1\tadvmod\t_\t_

"""
# dev: an unseen form and an unseen XPOS
DEV = "# sent_id = d\n1\tἄγνωστος\tἄγνωστος\tADJ\ta-s---mn-\t_\t0\troot\t_\t_\n" + (
    "2\tμὲν\tμέν\tADV\td--------\t_\t1\tadvmod\t_\t_\n\n"
)
TEST = TRAIN.split("\n\n")[0] + "\n\n"  # sentence a
# By hand: train forms ἐρᾷ μὲν οὐρανὸς καί ἐγώ · (the "1-2" and "3.1" lines are skipped) and
# XPOS v3spia--- d-------- n-s---mn- c-------- p1s---mn- u--------: 6 + 3 specials each.
VOCAB, TAGS = 9, 9


def perseus_root(tmp_path: Path, copies: int = 30) -> Path:
    """<root>/ud/UD_Ancient_Greek-Perseus/grc_perseus-ud-*.conllu; train repeated ``copies``
    times (90 sentences: two steps of the paper's batch 64)."""
    folder = tmp_path / "data" / "ud" / "UD_Ancient_Greek-Perseus"
    folder.mkdir(parents=True)
    for split, text in (("train", TRAIN * copies), ("dev", DEV), ("test", TEST)):
        (folder / f"grc_perseus-ud-{split}.conllu").write_text(text, encoding="utf-8")
    return tmp_path / "data"


def test_paper_preset_on_perseus_sizes_mismatch_is_one_error_naming_the_fix(tmp_path):
    w = create_workload("ud-pos-transformer", "paper")
    with pytest.raises(ConfigError, match=rf"--vocab_size={VOCAB} --num_tags={TAGS}"):
        w.setup_data(perseus_root(tmp_path), torch.device("cpu"))


def test_paper_preset_reads_perseus_format_trains_two_steps_and_evaluates(tmp_path):
    w = create_workload("ud-pos-transformer", "paper", vocab_size=VOCAB, num_tags=TAGS)
    w.setup_data(perseus_root(tmp_path), torch.device("cpu"))
    assert w.config.tag_column == "xpos" and w.config.attend_to_padding
    assert w.tags[:3] == ["<pad>", "<unk>", "<root>"]
    tag = {t: i for i, t in enumerate(w.tags)}
    ids, labels, lengths = w.data["train"]
    assert len(ids) == 90 and lengths[:3].tolist() == [4, 5, 3]  # ROOT + words, no 1-2 / 3.1
    assert labels[1, :5].tolist() == [
        2,
        *(tag[t] for t in "c-------- p1s---mn- v3spia--- u--------".split()),
    ]
    assert ids[:, 0].eq(2).all() and labels[:, 0].eq(2).all()  # ROOT in, ROOT tag out
    dev_ids, dev_labels, _ = w.data["val"]
    assert dev_ids[0].tolist() == [2, 1, ids[0, 2].item()]  # unseen form -> <unk>; μὲν known
    assert dev_labels[0].tolist() == [2, 1, tag["d--------"]]  # unseen XPOS -> <unk> target

    first = next(w.train_batches(0, torch.Generator().manual_seed(0)))
    assert first["ids"].shape == (64, 256) and "key_mask" not in first  # Flax's static padding
    # train at 16-token static padding: the same code path, 1/16 of the CPU time
    w = create_workload(
        "ud-pos-transformer", "paper", vocab_size=VOCAB, num_tags=TAGS, max_length=16
    )
    w.setup_data(perseus_root(tmp_path / "short"), torch.device("cpu"))
    batches = w.train_batches(0, torch.Generator().manual_seed(0))
    first = next(batches)
    assert first["ids"].shape == (64, 16) and "key_mask" not in first
    torch.manual_seed(0)
    model = w.build_model(0.5)
    assert count_params(model) == hand_count(128, VOCAB, TAGS)
    opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=1e-3)
    model.train()
    for batch in (first, next(batches)):
        assert torch.isfinite(train_step(model, opt, w.loss, batch).loss)
    metrics = w.evaluate(model.eval())
    assert all(
        math.isfinite(metrics[f"{s}/{m}"])
        for s in ("train", "val", "test")
        for m in ("loss", "acc")
    )


class _Constant(nn.Module):
    """Logits that ignore the input: ``logits`` at every position."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, ids, key_mask=None):
        return self.logits.expand(*ids.shape, -1)


def test_accuracy_and_loss_count_root_and_unknown_targets_but_not_padding(tmp_path):
    """Flax's weights = targets > 0: ROOT and <unk> targets count, padding does not."""
    w = create_workload("ud-pos-transformer", "paper", vocab_size=VOCAB, num_tags=TAGS)
    w.setup_data(perseus_root(tmp_path), torch.device("cpu"))
    always_root = torch.full((TAGS,), -5.0)
    always_root[2] = 5.0
    out = w.evaluate(_Constant(always_root))
    # dev: ROOT + 2 words (one with an unseen tag); test: ROOT + 3 words
    assert out["val/acc"] == pytest.approx(100 / 3) and out["val/word_acc"] == 0
    assert out["test/acc"] == pytest.approx(25.0) and out["test/word_acc"] == 0
    uniform = w.evaluate(_Constant(torch.zeros(TAGS)))
    assert uniform["val/loss"] == pytest.approx(math.log(TAGS))  # every counted target: log K
    # the training loss: the same weighting (pad label 0 skipped, 256-token static padding)
    batch = w._batch(*(t[:2] for t in w.data["train"]))
    loss, metrics = w.loss(_Constant(always_root), batch)
    assert float(metrics["acc"]) == pytest.approx(100 * 2 / (4 + 5))


def test_paper_preset_runs_end_to_end_on_perseus_format(tmp_path):
    """The paper preset through run.py as sweeps/paper.yaml runs it (sizes 0 = from the train
    split): build, train (2 steps, base and SAM), evaluate, store the data's sizes' count."""
    res = run_cli(
        [
            "--workload=ud-pos-transformer",
            "--preset=paper",
            f"--data-root={perseus_root(tmp_path)}",
            "--width=0.5x",
            "--optimizer=both",
            "--vocab_size=0",
            "--num_tags=0",
            "--num_epochs=1",
            "--max_length=16",  # static padding to 16 tokens, not 256: CPU seconds
            "--eval_every=1",
            f"--results={tmp_path / 'r'}",
            "--no-progress",
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    db = sqlite3.connect(tmp_path / "r" / "runs.sqlite")
    rows = db.execute("SELECT optimizer, status, n_params, config FROM runs").fetchall()
    assert sorted(r[:3] for r in rows) == [
        ("adamw", "done", hand_count(128, VOCAB, TAGS)),
        ("sam", "done", hand_count(128, VOCAB, TAGS)),
    ]
    stored = json.loads(rows[0][3])["run"]["workload_config"]
    assert stored["treebank"] == "UD_Ancient_Greek-Perseus" and stored["vocab_size"] == 0


def test_sizes_from_data_are_the_train_splits_and_unknown_before_setup(tmp_path):
    w = create_workload("ud-pos-transformer", "paper", vocab_size=0, num_tags=0, max_length=16)
    with pytest.raises(SizedByData):
        w.build_model(0.5)
    with pytest.raises(WidthError):  # the width is still checked first
        w.build_model(0.1)
    w.setup_data(perseus_root(tmp_path), torch.device("cpu"))
    assert count_params(w.build_model(0.5)) == hand_count(128, VOCAB, TAGS)
    fixed = create_workload("ud-pos-transformer", "paper", vocab_size=VOCAB, num_tags=0)
    fixed.setup_data(perseus_root(tmp_path / "b"), torch.device("cpu"))  # a set size is checked
    with pytest.raises(ConfigError, match="--vocab_size"):
        create_workload("ud-pos-transformer", "paper", vocab_size=VOCAB + 1, num_tags=0).setup_data(
            perseus_root(tmp_path / "c"), torch.device("cpu")
        )
    res = run_cli(["--list", "--workload=ud-pos-transformer", "--vocab_size=0"], tmp_path)
    assert res.returncode == 0 and res.stdout.count("from data") == 5, res.stdout + res.stderr


def test_paper_preset_without_perseus_names_the_file(tmp_path):
    w = create_workload("ud-pos-transformer", "paper")
    with pytest.raises(MissingDataError) as err:
        w.setup_data(tmp_path, torch.device("cpu"))
    msg = str(err.value)
    assert "grc_perseus-ud-train.conllu" in msg and "UD_Ancient_Greek-Perseus" in msg
    assert str(tmp_path) in msg and "github.com/UniversalDependencies" in msg


# ---------------------------------------------------------------------- recipe
@pytest.mark.parametrize("name", ["ud-pos-transformer", "sst2-lstm", "sst2-transformer"])
def test_rho_grids_are_the_papers(name):
    for preset in ("paper", "quick"):
        w = create_workload(name, preset)
        assert all(w.rho_grid_at(x) == PAPER_GRID for x in w.widths), (name, preset)


def test_paper_sweep_has_pos_with_and_without_early_stopping():
    entries = yaml.safe_load((REPO / "sweeps" / "paper.yaml").read_text())["entries"]
    pos = [e for e in entries if e["workload"] == "ud-pos-transformer"]
    assert sorted(e.get("protocol", "best-val") for e in pos) == ["best-val", "final"]
    assert all(e["widths"] == "all" for e in pos)


# ---------------------------------------------------------------------- English-EWT (held)
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
    w.setup_data(data_root, torch.device("cpu"))  # 19,674 forms + 3 and 17 UPOS + 3: checks pass
    upos = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X"
    assert w.tags[:3] == ["<pad>", "<unk>", "<root>"] and sorted(w.tags[3:]) == upos.split()
    assert w.tags[3] == "NOUN"  # by frequency, as Flax's Counter.most_common
    ids, labels, lengths = w.data["train"]
    assert ids.shape[0] == 500 and bool(((labels != 0) == (ids != 0)).all())
    batch = next(w.train_batches(0, torch.Generator().manual_seed(0)))
    assert batch["ids"].shape == batch["labels"].shape == (64, 256)  # Flax's static padding
    w = create_workload("ud-pos-transformer", "quick", max_train_examples=500)
    w.setup_data(data_root, torch.device("cpu"))
    batch = next(w.train_batches(0, torch.Generator().manual_seed(0)))
    assert batch["ids"].shape == batch["labels"].shape == batch["key_mask"].shape
    assert batch["ids"].shape[1] == int(batch["key_mask"].sum(1).max())  # trimmed, masked


def test_treebank_missing_offline_is_one_clear_error(tmp_path, monkeypatch):
    """No local files and no network: MissingDataError names the file, the folder and how."""
    import urllib.request

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    workload = create_workload("ud-pos-transformer", "smoke")
    with pytest.raises(MissingDataError, match=r"en_ewt-ud-train\.conllu.*github\.com"):
        workload.setup_data(tmp_path / "data", torch.device("cpu"))
    assert not any((tmp_path / "cache").rglob("*.conllu"))


def test_treebank_is_downloaded_into_the_cache_when_online(tmp_path, monkeypatch, data_root):
    """Online path: the release's files are fetched from GitHub into the cache, then read."""
    import io
    import urllib.request

    held = data_root / "ud" / "UD_English-EWT"
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
