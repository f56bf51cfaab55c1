"""results/regime.py: the plateau test on stored validation curves, against values worked out
by hand from the curves built here."""

from __future__ import annotations

import csv
import math

import pytest

from results.analysis import experiments
from results.regime import regime_cells, regime_sentence
from results.store import Store
from results.tables import write_tables
from tests.results.known_store import add_run

STEPS = list(range(10, 101, 10))  # 10 evaluations; the last 10% of training is step 100 alone


def _flat(seed: int) -> list[tuple[int, float, float]]:
    """Rises to 90 + seed at step 50, then stays: best at 50% of the run, no late gain."""
    return [(s, 1.0 / s, min(s, 50) / 50 * 90 + seed) for s in STEPS]


def _rising(seed: int) -> list[tuple[int, float, float]]:
    """Rises by 10 per evaluation to 100 + 2 seed: best at the end, late gain 10."""
    return [(s, 2.0 / s, s + 2 * seed) for s in STEPS]


def _store(tmp_path, widths=(1.0,), sam_curve=_rising) -> Store:
    store = Store(tmp_path / "runs.sqlite")
    for w in widths:
        for seed in range(3):
            base = _flat(seed)
            add_run(store, "w", optimizer="sgd", width=w, seed=seed, val=90, test=90, curve=base)
            sam = sam_curve(seed) if w == 1.0 else _flat(seed)
            add_run(
                store, "w", optimizer="sam", rho=0.1, width=w, seed=seed, val=95, test=95, curve=sam
            )
    return store


def test_cells_by_hand(tmp_path):
    store = _store(tmp_path)
    ((base, sam),) = regime_cells(store, experiments(store, "w")[0])
    assert (base.optimizer, base.seeds) == ("SGD", 3)
    assert base.best_at == pytest.approx(0.5)  # the first of the equal best values, at step 50
    assert base.late_gain == 0.0
    assert base.seed_se == pytest.approx(1 / math.sqrt(3))  # best values 90, 91, 92
    assert base.plateaued is True
    assert base.train_loss == pytest.approx(0.01)  # 1 / 100 at the last step
    assert (sam.optimizer, sam.best_at) == ("SAM rho=0.1", 1.0)
    assert sam.late_gain == pytest.approx(10.0)  # 100 + 2s against 90 + 2s
    assert sam.seed_se == pytest.approx(2 / math.sqrt(3))  # best values 100, 102, 104
    assert sam.plateaued is False
    assert sam.train_loss == pytest.approx(0.02)


def test_a_lower_is_better_metric_counts_a_late_fall_as_gain(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for seed in range(2):
        # MSE falls by 0.5 per evaluation to its last step: late gain 0.5 (better = lower)
        falling = [(s, 1.0, 10 - s / 20 + 0.01 * seed) for s in STEPS]
        # MSE best at step 20 then rising (overfitting): the validation metric has stopped
        overfit = [(s, 1.0, abs(s - 20) / 10 + 1 + 0.01 * seed) for s in STEPS]
        mse = dict(width=1, seed=seed, val=1, test=1, mode="min", target="mse")
        add_run(store, "m", optimizer="sgd", curve=falling, **mse)
        add_run(store, "m", optimizer="sam", rho=0.1, curve=overfit, **mse)
    ((base, sam),) = regime_cells(store, experiments(store, "m")[0])
    assert base.late_gain == pytest.approx(0.5) and base.best_at == 1.0
    assert base.plateaued is False  # 0.5 against a standard error of 0.005
    assert sam.late_gain == 0.0 and sam.best_at == pytest.approx(0.2)
    assert sam.plateaued is True


def test_sentence_names_the_widths_still_improving(tmp_path):
    store = _store(tmp_path, widths=(1.0, 2.0))
    sentence = regime_sentence(store, experiments(store, "w")[0])
    assert "the base optimizer (SGD) at 2 of 2 widths;" in sentence
    assert "SAM at 1 of 2 widths (still improving at 1x)." in sentence


def test_one_seed_gets_no_verdict(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    add_run(store, "w", optimizer="sgd", width=1, seed=0, val=90, test=90, curve=_rising(0))
    add_run(
        store, "w", optimizer="sam", rho=0.1, width=1, seed=0, val=90, test=90, curve=_rising(0)
    )
    ((base, _),) = regime_cells(store, experiments(store, "w")[0])
    assert base.plateaued is None and math.isnan(base.seed_se)
    assert regime_sentence(store, experiments(store, "w")[0]) == ""


def test_report_writes_the_table_and_the_findings_sentence(tmp_path):
    from runners.report import write_findings

    store = _store(tmp_path, widths=(1.0, 2.0, 4.0))
    write_tables(store, tmp_path)
    with open(tmp_path / "tables" / "regime.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["width"], r["optimizer"], r["verdict"]) for r in rows] == [
        ("1.0", "SGD", "plateau"),
        ("1.0", "SAM rho=0.1", "still improving"),
        ("2.0", "SGD", "plateau"),
        ("2.0", "SAM rho=0.1", "plateau"),
        ("4.0", "SGD", "plateau"),
        ("4.0", "SAM rho=0.1", "plateau"),
    ]
    assert float(rows[1]["late_gain"]) == pytest.approx(10.0)
    write_findings(store, tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert "SAM at 2 of 3 widths (still improving at 1x)." in readme
