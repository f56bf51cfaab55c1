"""Issue 17 on the report side: each experiment reports at its protocol (best validation epoch
or final epoch), and the paper's numbers attach only to runs of the exact setup they came from.
Expected values are the constructed stores' numbers and PAPERS.md's, written out here."""

from __future__ import annotations

import csv

import pytest

from results.analysis import ablation_experiments, experiments, reference_at
from results.paper_numbers import REFERENCES, paper_at, reference_for
from results.render import BLOCK_END, BLOCK_START
from results.store import Store
from runners.report import main as report_main
from tests.results.known_store import add_run

CIFAR = "cifar10-resnet18"


def _pair(store, workload, *, width, seed, gain, preset="paper", rho=0.1, **kw):
    """A base and a SAM run with a known test gain (best-val and final alike)."""
    add_run(
        store,
        workload,
        optimizer="sgd",
        width=width,
        seed=seed,
        val=50,
        test=50,
        final=(50, 50),
        preset=preset,
        **kw,
    )
    add_run(
        store,
        workload,
        optimizer="sam",
        rho=rho,
        width=width,
        seed=seed,
        val=51,
        test=50 + gain,
        final=(51, 50 + gain),
        preset=preset,
        **kw,
    )


@pytest.mark.parametrize("ref", [r for r in REFERENCES if r.kind == "width"], ids=str)
def test_each_reference_matches_its_own_setup_and_no_quick_or_smoke_run(ref):
    config = {"preset": ref.preset, **ref.requires}
    assert reference_for(ref.workload, config, ref.protocol) is ref
    for preset in ("quick", "smoke", "tiny"):
        assert reference_for(ref.workload, {**config, "preset": preset}, ref.protocol) is None
    other = "final" if ref.protocol == "best-val" else "best-val"
    assert reference_for(ref.workload, config, other) is None


def test_depth_and_other_comparisons_never_attach_to_a_width_table():
    kinds = {r.kind for r in REFERENCES}
    assert {"depth", "best over weight decay", "SGD 400 epochs vs SAM 200"} <= kinds
    for ref in REFERENCES:
        if ref.kind != "width":
            config = {"preset": ref.preset, **ref.requires}
            found = reference_for(ref.workload, config, ref.protocol)
            assert found is not ref and (found is None or found.kind == "width")
            assert reference_for(ref.workload, config, ref.protocol, kind=ref.kind) is ref
    # once the depth field exists, an 8-block ResNet is not Fig. 1's ResNet-18 (2 blocks)
    paper = {"preset": "paper", "weight_decay": 5e-4}
    assert reference_for(CIFAR, {**paper, "depth": 8}, "best-val") is None
    assert reference_for(CIFAR, {**paper, "depth": 2}, "best-val").source.startswith("Fig. 1")


def test_quick_runs_get_no_reference_and_paper_runs_get_fig1(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for preset in ("quick", "paper"):
        for width in (0.25, 1.0):
            _pair(
                store, "mnist-mlp", width=width, seed=0, gain=0.1, preset=preset, weight_decay=1e-4
            )
    by_preset = {e.config["preset"]: e for e in experiments(store, "mnist-mlp")}
    assert by_preset["quick"].reference is None
    assert by_preset["paper"].reference.source == "Fig. 1 (mnist-mlp)"
    # ... and an overridden weight decay under the paper preset is not the paper's experiment
    _pair(store, "mnist-mlp", width=1.0, seed=0, gain=0.1, weight_decay=0.0)
    (no_wd,) = [e for e in experiments(store, "mnist-mlp") if e.config["weight_decay"] == 0.0]
    assert no_wd.reference is None


def test_a_paper_preset_run_with_a_shortened_recipe_gets_no_reference():
    fig1 = {"preset": "paper", "weight_decay": 1e-4}
    assert reference_for("mnist-mlp", fig1, "best-val").source == "Fig. 1 (mnist-mlp)"
    unchanged = {**fig1, "changed_from_preset": []}
    assert reference_for("mnist-mlp", unchanged, "best-val").source == "Fig. 1 (mnist-mlp)"
    # the evaluation batch changes no number: still the paper's experiment
    eval_only = {**fig1, "changed_from_preset": ["eval_batch_size", "train_eval_size"]}
    assert reference_for("mnist-mlp", eval_only, "best-val") is not None
    for changed in (["num_epochs"], ["num_train"], ["eval_batch_size", "learning_rate"]):
        shortened = {**fig1, "changed_from_preset": changed}
        assert reference_for("mnist-mlp", shortened, "best-val") is None, changed
    # an ablation changes the fields its reference requires, and keeps its numbers
    noisy = {"preset": "paper", "label_noise": 0.75, "weight_decay": 5e-4}
    noisy["changed_from_preset"] = ["label_noise"]
    assert reference_for(CIFAR, noisy, "final").source.startswith("label noise 0.75")
    assert (
        reference_for(
            CIFAR, {**noisy, "changed_from_preset": ["label_noise", "num_epochs"]}, "final"
        )
        is None
    )


def test_tables_drop_the_reference_of_runs_that_changed_the_paper_recipe(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for width in (0.25, 1.0):
        _pair(
            store,
            "mnist-mlp",
            width=width,
            seed=0,
            gain=0.1,
            weight_decay=1e-4,
            changed_from_preset=["num_epochs"],
        )
    (exp,) = experiments(store, "mnist-mlp")
    assert exp.reference is None
    assert all(reference_at(exp, row) is None for row in exp.rows)
    assert exp.rows[0].changed_from_preset == ("num_epochs",)


def test_paper_no_wd_runs_get_the_no_weight_decay_numbers_not_fig1(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for width in (0.0625, 0.125):
        _pair(store, CIFAR, width=width, seed=0, gain=0.3, preset="paper-no-wd", weight_decay=0.0)
        _pair(store, CIFAR, width=width, seed=0, gain=0.3, weight_decay=5e-4)
    by_preset = {e.config["preset"]: e for e in experiments(store, CIFAR)}
    no_wd, fig1 = by_preset["paper-no-wd"], by_preset["paper"]
    # PAPERS.md: no weight decay .23 .62 ...; Fig. 1 (wd 5e-4) .36 .66 ... at 4 and 8 filters
    assert [paper_at(no_wd.reference.result, w) for w in (0.0625, 0.125)] == [0.23, 0.62]
    assert [paper_at(fig1.reference.result, w) for w in (0.0625, 0.125)] == [0.36, 0.66]


def test_label_noise_numbers_attach_under_the_final_protocol_only(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for noise in (0.0, 0.75):
        for protocol in ("final", "best-val"):
            _pair(
                store,
                CIFAR,
                width=0.0625,
                seed=0,
                gain=5.0,
                label_noise=noise,
                weight_decay=5e-4,
                run_extra={"protocol": protocol},
            )
    exps = {e.protocol: e for e in ablation_experiments(store, "label_noise")}
    assert set(exps) == {"final", "best-val"}  # the declared protocol is its own setup
    final, best = exps["final"], exps["best-val"]
    noisy = [r for r in final.rows if r.ablation_value == 0.75]
    # 4 filters at 0.75 noise: SGD 54.4, SAM 59.9 -> 5.5 (final-epoch numbers)
    assert paper_at(reference_at(final, noisy[0]).result, 0.0625) == pytest.approx(5.5)
    assert noisy[0].alt.protocol == "best-val"  # shown beside, without the paper's numbers
    (best_noisy,) = [r for r in best.rows if r.ablation_value == 0.75]
    assert best_noisy.protocol == "best-val" and reference_at(best, best_noisy) is None
    # the clean rows of a final-epoch table are not Fig. 1's best-epoch experiment either
    assert reference_at(final, [r for r in final.rows if r.ablation_value == 0.0][0]) is None


def test_label_noise_runs_stored_before_the_protocol_field_report_the_final_epoch(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for noise in (0.0, 0.75):
        _pair(store, CIFAR, width=0.0625, seed=0, gain=5.0, label_noise=noise, weight_decay=5e-4)
    (exp,) = ablation_experiments(store, "label_noise")
    assert exp.protocol == "final" and {r.protocol for r in exp.rows} == {"final"}
    (clean,) = experiments(store, CIFAR)  # the clean runs' own table: Fig. 1's protocol
    assert clean.protocol == "best-val" and clean.reference.source.startswith("Fig. 1")
    # a run that declares the default is the same experiment as one stored before the field
    _pair(
        store,
        CIFAR,
        width=0.125,
        seed=0,
        gain=1.0,
        weight_decay=5e-4,
        run_extra={"protocol": "best-val"},
    )
    (clean,) = experiments(store, CIFAR)
    assert [r.width for r in clean.rows] == [0.0625, 0.125]


def test_final_protocol_chooses_rho_on_final_validation_and_reports_final_test(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    final = {"protocol": "final"}
    for extra in ({}, final):
        for seed in (0, 1):
            kw = {"width": 1.0, "seed": seed, "run_extra": extra}
            add_run(store, "w", optimizer="sgd", val=80, test=80, final=(70, 70), **kw)
            # rho 0.05 wins at the best epoch, rho 0.1 at the last epoch
            add_run(store, "w", optimizer="sam", rho=0.05, val=90, test=85, final=(71, 72), **kw)
            add_run(
                store, "w", optimizer="sam", rho=0.1, val=85, test=83, final=(75, 74 + seed), **kw
            )
    exps = {e.protocol: e for e in experiments(store, "w")}
    (best,), (last,) = exps["best-val"].rows, exps["final"].rows
    assert (best.rho, best.gain[0], best.protocol) == (0.05, 5.0, "best-val")
    assert (last.rho, last.gain[0], last.protocol) == (0.1, pytest.approx(4.5), "final")
    assert last.gains == [4.0, 5.0]


def test_old_stores_take_final_metrics_from_the_last_metric_rows(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    ids = {}
    for opt, rho, last in (("sgd", 0.0, 60.0), ("sam", 0.1, 63.5)):
        ids[opt] = add_run(
            store,
            "w",
            optimizer=opt,
            rho=rho,
            width=1,
            seed=0,
            val=90,
            test=90,
            run_extra={"protocol": "final"},
        )
        store.log_metrics(ids[opt], 10, 1.0, {"val/acc": 99.0, "test/acc": 99.0})
        store.log_metrics(ids[opt], 20, 2.0, {"val/acc": last - 1, "test/acc": last})
    ((row,),) = [e.rows for e in experiments(store, "w")]
    assert row.protocol == "final" and row.gain[0] == pytest.approx(3.5)  # step 20, not 10


def test_findings_block_is_generated_and_the_hand_written_text_kept(tmp_path, capsys):
    store = Store(tmp_path / "runs.sqlite")
    for w_i, width in enumerate((1.0, 2.0, 4.0)):
        for seed in range(3):
            _pair(store, "w", width=width, seed=seed, gain=w_i + 0.1 * seed)
    store.close()
    readme = tmp_path / "README.md"
    readme.write_text("# Hand-written\n\nWhat was run and how.\n")
    sections = ["--results", str(tmp_path), "--sections", "tables,findings"]
    assert report_main(sections) == 0
    out = capsys.readouterr().out
    first = readme.read_text()
    assert first.startswith("# Hand-written\n\nWhat was run and how.\n\n" + BLOCK_START)
    # gains 0, 1, 2 (+0.1 seed) at params 1000, 2000, 4000: rises, slope 1 / log10(2) = 3.32
    assert "gain rises with width: slope +3.32" in first and "No paper reference" in first
    assert "| w | synthetic" not in first and "rises" in out and "+3.32 [" in out
    readme.write_text(first.replace("What was run and how.", "Edited by hand."))
    assert report_main(sections) == 0
    second = readme.read_text()
    assert second.count(BLOCK_START) == second.count(BLOCK_END) == 1
    assert second == first.replace("What was run and how.", "Edited by hand.")


def test_summary_csv_has_the_trend_columns(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for width in (1.0, 2.0):
        for seed in range(2):
            _pair(store, "w", width=width, seed=seed, gain=1.0 + seed)
    assert report_main(["--results", str(tmp_path), "--sections", "tables"]) == 0
    with open(tmp_path / "tables" / "summary.csv", newline="") as f:
        (rec,) = list(csv.DictReader(f))
    # the same gains at both widths: slope 0, and no width effect to detect
    assert float(rec["slope"]) == pytest.approx(0.0, abs=1e-12)
    assert rec["verdict"] == "no trend detected"
    assert rec["at_largest"] == "not resolved"  # gains 1, 2: t-interval 1.5 +- 6.35 spans 0
    assert float(rec["gain_largest_ci95_lo"]) == pytest.approx(1.5 - 12.706204736 * 0.5)


def test_a_scaled_down_setup_is_told_whether_it_could_detect_the_papers_slope(tmp_path):
    """No paper numbers for a shortened recipe, but the paper's Fig. 1 slope for scale: the
    finding says whether the seeds had the power to detect an effect of that size."""
    import numpy as np

    from results.analysis import trend
    from results.tables import findings

    store = Store(tmp_path / "runs.sqlite")
    for width in (0.25, 1.0, 4.0):
        for seed, gain in enumerate((0.1, 0.3, 0.2)):
            _pair(
                store,
                "mnist-mlp",
                width=width,
                seed=seed,
                gain=gain,
                weight_decay=1e-4,
                changed_from_preset=["num_epochs"],
            )
    (exp,) = experiments(store, "mnist-mlp")
    t = trend(exp, n_boot=200, n_perm=200)
    assert t.reference is None and t.context.source == "Fig. 1 (mnist-mlp)"
    # the paper's gains .07 .06 .18 .19 .19 against log10 of its parameter counts (PAPERS.md)
    params = [61_035, 125_810, 266_610, 1_426_410, 5_366_010]
    expected = np.polyfit(np.log10(params), [0.07, 0.06, 0.18, 0.19, 0.19], 1)[0]
    assert t.context_slope == pytest.approx(expected, rel=1e-9)
    (line,) = findings([(exp, t)])
    assert "No paper reference for this setup (preset paper, changed num_epochs)" in line
    assert f"Fig. 1 (mnist-mlp) slope at its full recipe is +{expected:.3g}" in line
    # equal gains at every width with a spread of 0.1: a slope of 0.056/decade is not detectable
    assert t.test.min_detectable_slope > expected
    assert line.endswith("did not have the power to detect.")


def test_the_compute_table_sums_each_workloads_stored_run_times(tmp_path):
    from results.tables import compute_table

    store = Store(tmp_path / "runs.sqlite")
    for seed, (t_base, t_sam) in enumerate(((10.0, 25.0), (30.0, 35.0))):
        for optimizer, t, rho in (("sgd", t_base, 0.0), ("sam", t_sam, 0.1)):
            add_run(
                store,
                "mnist-mlp",
                optimizer=optimizer,
                rho=rho,
                width=1.0,
                seed=seed,
                val=50,
                test=50,
                wall_time_s=t,
            )
    add_run(
        store,
        "mnist-mlp",
        optimizer="sgd",
        width=2.0,
        seed=0,
        val=50,
        test=50,
        status="failed",
        wall_time_s=1000.0,
    )  # failed runs are not counted
    (record,) = compute_table(store).records
    assert (record["runs"], record["base_runs"], record["sam_runs"]) == (4, 2, 2)
    assert record["total_h"] == pytest.approx(100.0 / 3600)
    assert (record["median_run_s"], record["slowest_run_s"]) == (30.0, 35.0)


def test_a_scaled_down_setup_with_one_width_is_not_said_to_lack_variance(tmp_path):
    from results.analysis import trend
    from results.tables import findings

    store = Store(tmp_path / "runs.sqlite")
    for seed, gain in enumerate((0.1, 0.3, 0.2)):
        _pair(
            store,
            "mnist-mlp",
            width=0.25,
            seed=seed,
            gain=gain,
            weight_decay=1e-4,
            changed_from_preset=["num_epochs"],
        )
    (exp,) = experiments(store, "mnist-mlp")
    (line,) = findings([(exp, trend(exp, n_boot=100, n_perm=100))])
    assert line.endswith("which these seeds cannot test yet (too few widths).")
