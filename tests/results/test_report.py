"""The report from a store with known rows: the numbers in the tables are checked against values
computed by hand here (t quantiles from a printed table, gains from the construction)."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys

import pytest

from results import io as results_io
from results.analysis import experiments, trend
from results.figures import write_figures
from results.io import atomic_write
from results.paper_numbers import REFERENCES, paper_at
from results.store import Store
from results.tables import write_tables
from tests.conftest import REPO, run_cli
from tests.results.known_store import add_run, toy_store

# Student t, 97.5% quantile, from a printed table (df = 2, 3): not from scipy, which the code uses
T975 = {2: 4.302652729911275, 3: 3.182446305284263}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    store = toy_store(folder / "runs.sqlite")
    yield store, folder
    store.close()


def test_gain_mean_and_95ci_by_hand(toy):
    store, _ = toy
    (exp,) = experiments(store, "toy-acc")
    assert [r.width for r in exp.rows] == [1.0, 2.0, 4.0]
    for k, row in enumerate(exp.rows, start=1):
        # per-seed gains k * [1, 2, 3]: mean 2k, sample std k, half-width t_{.975,2} k / sqrt(3)
        assert row.gains == pytest.approx([k, 2 * k, 3 * k])
        assert row.gain[0] == pytest.approx(2 * k)
        assert row.gain_ci95 == pytest.approx(T975[2] * k / math.sqrt(3))
        assert row.base == pytest.approx((80 + k - 1 + 1, 1.0))  # 80 + w_i + seed over seeds 0..2
        assert row.seeds == 3 and row.diverged == 0
    assert exp.rows[0].gain_ci95 == pytest.approx(2.4841, abs=1e-4)


def test_rho_is_chosen_on_validation_even_when_test_prefers_another(toy):
    store, _ = toy
    (exp,) = experiments(store, "toy-acc")
    # rho 0.1 has 10x the test gain, but rho 0.05 has the better mean validation metric
    assert [r.rho for r in exp.rows] == [0.05, 0.05, 0.05]


def test_spearman_of_a_monotone_series_is_one(toy, tmp_path):
    store, _ = toy
    (exp,) = experiments(store, "toy-acc")
    assert trend(exp).spearman == pytest.approx(1.0)
    exp.rows = exp.rows[:2]  # two widths say nothing about a trend
    assert math.isnan(trend(exp).spearman)


def test_single_seed_has_no_interval_and_a_diverged_rho_is_not_eligible(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    add_run(store, "w", optimizer="sgd", width=1, seed=0, val=50, test=50)
    add_run(store, "w", optimizer="sam", rho=0.1, width=1, seed=0, val=60, test=55)
    add_run(store, "w", optimizer="sam", rho=0.2, width=1, seed=0, val=70, test=70)
    add_run(store, "w", optimizer="sam", rho=0.2, width=1, seed=1, val=0, test=0, status="diverged")
    ((row,),) = [e.rows for e in experiments(store, "w")]
    assert row.rho == 0.1 and row.gain[0] == 5 and math.isnan(row.gain_ci95)
    assert row.diverged == 1


def test_late_phase_runs_stay_out_of_the_width_table_and_get_their_section(tmp_path):
    from runners.report import write_late_phase, write_sharpness

    store = Store(tmp_path / "runs.sqlite")
    add_run(store, "w", optimizer="sgd", width=1, seed=0, val=50, test=50)
    full = add_run(store, "w", optimizer="sam", rho=0.1, width=1, seed=0, val=51, test=52)
    late = {"sam_start": 0.5, "sam_end": 1.0}  # best on validation, but not SAM throughout
    add_run(store, "w", optimizer="sam", rho=0.2, width=1, seed=0, val=90, test=60, run_extra=late)
    ((row,),) = [e.rows for e in experiments(store, "w")]
    assert (row.rho, row.gain[0]) == (0.1, 2)
    assert "no sharpness measures" in write_sharpness(store, tmp_path)
    assert "SAM [0.5, 1)" in write_late_phase(store, tmp_path)
    assert (tmp_path / "tables" / "late_phase_w.md").exists()
    store.log_measure(full, "lambda_max", 3.5)
    assert "| 3.5 |" in write_sharpness(store, tmp_path)
    assert (tmp_path / "tables" / "sharpness.md").exists()


def _mnist_runs(store, preset):
    ours = {0.25: 0.5, 1.0: -0.1, 4.0: -0.3}  # falling, one sign flip vs the paper's .07 .18 .19
    for width, gain in ours.items():
        for seed in (0, 1):
            kw = {"width": width, "seed": seed, "preset": preset, "weight_decay": 1e-4}
            add_run(store, "mnist-mlp", optimizer="sgd", val=97, test=97, **kw)
            add_run(store, "mnist-mlp", optimizer="sam", rho=0.05, val=98, test=97 + gain, **kw)


def test_summary_trend_test_and_the_paper_only_for_the_paper_preset(tmp_path):
    # Was: "sign agrees"/"trend agrees" from Spearman against the paper's numbers, attached by
    # workload alone (issue 17). Now the trend test's numbers, and the paper only for `paper`.
    store = Store(tmp_path / "runs.sqlite")
    _mnist_runs(store, "paper")
    _mnist_runs(store, "quick")
    write_tables(store, tmp_path)
    with open(tmp_path / "tables" / "summary.csv", newline="") as f:
        recs = {r["setup"]: r for r in csv.DictReader(f)}
    paper, quick = recs["preset=paper"], recs["preset=quick"]
    for rec in (paper, quick):
        assert rec["workload"] == "mnist-mlp" and rec["widths"] == "0.25 1 4"
        assert rec["protocol"] == "best-val" and rec["n_gains"] == "6"
        # params 250/1000/4000: equally spaced by d = log10(4) in log10, so the least-squares
        # slope over 3 equal groups is (g_last - g_first) / (2 d)
        assert float(rec["slope"]) == pytest.approx((-0.3 - 0.5) / (2 * math.log10(4)))
        # two identical seeds per width: of the 6!/(2!)^3 = 90 distinct arrangements only the
        # observed one has a slope this low, so the exact one-sided p is 1/90 (< 0.025: falls)
        assert float(rec["p_falls"]) == pytest.approx(1 / 90, abs=0.006)
        assert rec["verdict"] == "falls"
        assert float(rec["gain_largest"]) == pytest.approx(-0.3)
        assert float(rec["spearman"]) == pytest.approx(-1.0)
    # the paper's gains, its slope over its own widths (np.polyfit by hand: 0.0693 per decade)
    assert paper["paper_source"] == "Fig. 1 (mnist-mlp)"
    assert paper["paper_gains"] == "0.07 0.18 0.19"
    assert float(paper["paper_slope"]) == pytest.approx(0.0693181448, rel=1e-6)
    assert (paper["sign_agree"], paper["sign_compared"]) == ("1", "3")
    # the quick preset is not the paper's experiment: no reference, no comparison
    assert quick["paper_source"] == quick["paper_gains"] == quick["paper_slope"] == ""
    assert quick["sign_agree"] == quick["sign_compared"] == ""
    md = (tmp_path / "tables" / "mnist-mlp.md").read_text()
    assert "accuracy, %" in md and "| 0.25x | 250 |" in md and "| 0.07 | 0.02 |" in md
    quick_rows = [line for line in md.splitlines() if line.endswith("| preset=quick |")]
    assert len(quick_rows) == 3 and all("| - | - | - | - | - |" in r for r in quick_rows)


def test_paper_numbers_are_consistent_and_in_our_units():
    fig1 = {r.workload: r.result for r in REFERENCES if r.source.startswith("Fig. 1")}
    for name in ("synthetic-regression", "mnist-mlp", "cifar10-resnet18", "sst2-lstm", "atari-ppo"):
        assert name in fig1
    assert paper_at(fig1["cifar10-resnet18"], 0.0625) == 0.36  # 4 filters = 4/64 x
    assert paper_at(fig1["synthetic-regression"], 10.0) == 0.083  # h = 1000
    assert paper_at(fig1["mnist-mlp"], 4.0, "best_rho") == 0.2
    assert paper_at(fig1["ogbg-molpcba"], 4.0, "sam") == pytest.approx(0.2204)  # AP 22.04 / 100
    # a transcription check: each reported gain equals SAM - base up to one unit in its last
    # reported digit (the paper rounds each number on its own: 98.85 - 98.67 is given as .19)
    for result in (r.result for r in REFERENCES):
        if result.base and result.sam:
            for b, s, g in zip(result.base, result.sam, result.gain, strict=True):
                if b is not None and s is not None:
                    digits = 0 if float(g).is_integer() else len(repr(g).split(".")[1])
                    assert s - b == pytest.approx(g, abs=1.01 * 10.0**-digits)


def test_csv_parses_back_and_latex_has_the_rows(toy):
    store, folder = toy
    write_tables(store, folder)
    with open(folder / "tables" / "toy-acc.csv", newline="") as f:
        recs = list(csv.DictReader(f))
    assert [float(r["width"]) for r in recs] == [1.0, 2.0, 4.0]
    assert float(recs[1]["gain_ci95"]) == pytest.approx(2 * T975[2] / math.sqrt(3))
    assert [float(r["rho"]) for r in recs] == [0.05] * 3
    tex = (folder / "tables" / "toy-acc.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert "1x & 1,000 & 81 $\\pm$ 1 & 83 $\\pm$ 2 & 0.05 & 2 $\\pm$ 2.5 & 3 & 0" in tex
    assert tex.count("\\\\") == 4  # header + 3 rows


def test_ablation_table_groups_by_width_and_value(tmp_path):
    # Was: the quick runs got the paper's label-noise and Fig. 1 numbers, and the table reported
    # the best validation epoch. Now label noise reports the final epoch with best-val beside,
    # and quick runs get no paper numbers (issue 17).
    store = Store(tmp_path / "runs.sqlite")
    for seed in (0, 1):
        for noise, gain in ((0.0, 0.5), (0.75, 7.0)):
            kw = {"label_noise": noise, "width": 0.0625, "seed": seed}
            add_run(
                store, "cifar10-resnet18", optimizer="sgd", val=50, test=50, final=(40, 40), **kw
            )
            add_run(
                store,
                "cifar10-resnet18",
                optimizer="sam",
                rho=0.1,
                val=51,
                test=50 + gain,
                final=(41, 40 + 2 * gain),
                **kw,
            )
    (clean,) = experiments(store, "cifar10-resnet18")  # the noisy runs stay out of the main table
    assert [r.gain[0] for r in clean.rows] == [pytest.approx(0.5)]
    assert clean.protocol == "best-val"
    write_tables(store, tmp_path)
    with open(tmp_path / "tables" / "ablation_label_noise.csv", newline="") as f:
        recs = list(csv.DictReader(f))
    assert [(float(r["width"]), float(r["label_noise"])) for r in recs] == [
        (0.0625, 0.0),
        (0.0625, 0.75),
    ]
    assert [r["protocol"] for r in recs] == ["final", "final"]
    assert float(recs[1]["gain_mean"]) == pytest.approx(14.0)  # final: 40 + 2 * 7 - 40
    assert float(recs[1]["alt_gain_mean"]) == pytest.approx(7.0)  # best-val beside it
    assert recs[1]["alt_protocol"] == "best-val"
    assert recs[0]["paper_gain"] == recs[1]["paper_gain"] == ""  # quick runs: no reference
    assert not (tmp_path / "tables" / "ablation_sparsity.md").exists()


def test_figures_are_written(toy):
    store, folder = toy
    text = write_figures(store, folder)
    for stem in ("gain_vs_params", "rho_vs_width", "curves_toy-acc"):
        png = (folder / "figures" / f"{stem}.png").read_bytes()
        pdf = (folder / "figures" / f"{stem}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 1000
        assert pdf.startswith(b"%PDF") and len(pdf) > 1000
        assert stem in text


def test_figures_redrawn_from_the_same_store_are_the_same_bytes(toy):
    """A regenerated committed report must not change its files: the PDFs carried their
    creation time (results/quick's PDFs differed on every report)."""
    import time

    store, folder = toy
    write_figures(store, folder)
    first = {p.name: p.read_bytes() for p in (folder / "figures").iterdir()}
    time.sleep(1.1)  # PDF dates have one-second resolution
    write_figures(store, folder)
    again = {p.name: p.read_bytes() for p in (folder / "figures").iterdir()}
    assert first.keys() == again.keys() and any(n.endswith(".pdf") for n in first)
    assert [n for n in first if first[n] != again[n]] == []


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch, toy):
    path = atomic_write(tmp_path / "t.md", "old")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_io.os, "replace", disk_full)
    with pytest.raises(OSError):
        atomic_write(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["t.md"]  # no temp left
    # the same through the table writer: the previous tables stay whole
    store, folder = toy
    monkeypatch.undo()
    write_tables(store, folder)
    before = (folder / "tables" / "toy-acc.md").read_text()
    monkeypatch.setattr(results_io.os, "replace", disk_full)
    with pytest.raises(OSError):
        write_tables(store, folder)
    assert (folder / "tables" / "toy-acc.md").read_text() == before


def test_report_cli_exit_codes_and_output(tmp_path, toy):
    missing = run_cli(["--results", "nowhere"], tmp_path, script="report.py")
    assert missing.returncode == 2 and missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1 and "runs.sqlite" in missing.stderr
    _, folder = toy
    unknown = run_cli(
        ["--results", str(folder), "--workload", "nope"], tmp_path, script="report.py"
    )
    assert unknown.returncode == 2 and "toy-acc" in unknown.stderr
    ok = run_cli(["--results", str(folder), "--sections", "tables"], tmp_path, script="report.py")
    assert ok.returncode == 0, ok.stderr
    assert "Cross-domain summary" in ok.stdout and "| 2x | 2,000 |" in ok.stdout


def test_results_and_the_report_import_no_torch(toy):
    _, folder = toy
    code = (
        "import sys, runners.report as r, results.figures, results.tables, results.analysis;"
        f"assert r.main(['--results', {str(folder)!r}, '--sections', 'tables']) == 0;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_tensorboard_events_hold_the_stored_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from runners.report import write_tensorboard

    store = Store(tmp_path / "runs.sqlite")
    curve = [(10, 0.5, 60.0), (20, 0.25, 70.0)]
    add_run(store, "w", optimizer="sgd", width=1, seed=0, val=70, test=69, curve=curve)
    write_tensorboard(store, tmp_path)
    (run_dir,) = (tmp_path / "tensorboard").iterdir()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/acc")] == [(10, 60.0), (20, 70.0)]
    write_tensorboard(store, tmp_path)  # regenerated, not appended
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert len(events.Scalars("train/loss_first_pass")) == 2
