"""Shared language data code: CoNLL-U reading, vocabularies, label noise, padding."""

from __future__ import annotations

import pytest
import torch

from domains.language.common import (
    Vocab,
    cached_vocab,
    check_vocab_size,
    flip_labels,
    pad_sequences,
    read_conllu,
    read_sst2,
)
from domains.workload import ConfigError

pytestmark = pytest.mark.language

# A multi-word token (3-4 "don't" = do + n't) and an empty node (5.1) as UD writes them.
CONLLU = """\
# sent_id = a
# text = I don't know it.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
5\tit\tit\tPRON\tPRP\t_\t4\tobj\t_\t_
5.1\tknew\tknow\tVERB\tVBD\t_\t_\t_\t4:conj\t_
6\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = b
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_conllu_reader_skips_multiword_tokens_and_empty_nodes():
    sents = read_conllu(CONLLU.splitlines(keepends=True))
    assert sents == [
        (["I", "do", "n't", "know", "it", "."], ["PRON", "AUX", "PART", "VERB", "PRON", "PUNCT"]),
        (["Yes"], ["INTJ"]),  # the last sentence needs no trailing blank line
    ]
    xpos = read_conllu(CONLLU.splitlines(), tag_column="xpos")
    assert xpos[0][1] == ["PRP", "VBP", "RB", "VB", "PRP", "."]
    with pytest.raises(ConfigError, match="tag_column"):
        read_conllu([], tag_column="deprel")


def test_vocab_is_deterministic_and_maps_unknown_words_to_unk(tmp_path):
    train = [["b", "a", "c"], ["a", "b"], ["a", "d"]]
    v1 = Vocab.build(train, min_count=2)
    v2 = Vocab.build(list(reversed(train)), min_count=2)  # order of sentences does not matter
    assert v1.itos == v2.itos == ["<pad>", "<unk>", "a", "b"]  # by count, ties alphabetical
    assert v1.encode(["a", "c", "zzz", "b"]) == [2, 1, 1, 3]  # c is below min_count
    cached = cached_vocab("t", train, 2, cache_dir=tmp_path)
    again = cached_vocab("t", train, 2, cache_dir=tmp_path)  # read back from the JSON cache
    assert cached.itos == again.itos == v1.itos and len(list(tmp_path.glob("*.json"))) == 1
    assert cached_vocab("t", train, 1, cache_dir=tmp_path).itos[2:] == ["a", "b", "c", "d"]
    with pytest.raises(ConfigError, match="--vocab_size=4"):
        check_vocab_size("toy vocabulary", 5, len(v1))


def test_flip_labels_exact_rate_seeded_and_checked():
    labels = [0, 1] * 500
    noisy = flip_labels(labels, 0.25, 2, seed=3)
    assert sum(a != b for a, b in zip(labels, noisy)) == 250
    assert noisy == flip_labels(labels, 0.25, 2, seed=3) != flip_labels(labels, 0.25, 2, seed=4)
    assert flip_labels(labels, 0.0, 2, seed=0) == labels
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ConfigError, match=r"label_noise must be in \[0, 1\)"):
            flip_labels(labels, bad, 2, seed=0)


def test_pad_sequences_truncates_and_right_pads():
    out = pad_sequences([[5, 6, 7], [8]], pad_value=0, max_length=2)
    assert torch.equal(out, torch.tensor([[5, 6], [8, 0]]))


def test_read_sst2_checks_header(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("sentence\tlabel\nit 's fine \t1\nbad .\t0\n")
    assert read_sst2(good) == ([["it", "'s", "fine"], ["bad", "."]], [1, 0])
    bad = tmp_path / "bad.tsv"
    bad.write_text("it 's fine\t1\n")
    with pytest.raises(ValueError, match="header"):
        read_sst2(bad)
