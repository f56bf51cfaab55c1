"""runners/theory.py: the slope fit, the linear-convergence rows from a store, the CLI end to
end on tiny settings, and bad input (exit 2, one line)."""

from __future__ import annotations

import math

import pytest

from results.store import Store
from results.theory_figures import fit_log_linear, linear_convergence_rows
from runners.theory import main
from tests.results.known_store import start_toy_run


def test_slope_fit_recovers_the_rate_of_a_geometric_sequence():
    steps = list(range(1, 60))
    losses = [3.0 * 0.93**t for t in steps]
    slope, intercept = fit_log_linear(steps, losses)
    assert math.exp(slope) == pytest.approx(0.93, rel=1e-9)
    assert math.exp(intercept) == pytest.approx(3.0, rel=1e-9)
    assert math.isnan(fit_log_linear([1], [1.0])[0])


def test_linear_convergence_rows_select_noiseless_full_batch_runs(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        for rid, noise, batch, rate in (("a", 0.0, 256, 0.9), ("b", 1.0, 256, 0.5)):
            start_toy_run(
                store,
                rid,
                workload="synthetic-regression",
                width=2.0,
                preset="paper",
                config={
                    "run": {
                        "workload_config": {
                            "noise_std": noise,
                            "batch_size": batch,
                            "num_train": 256,
                        }
                    }
                },
                n_params=20_401,
            )
            for t in range(1, 21):
                store.log_metrics(rid, t, t, {"train/loss_first_pass": rate**t})
            store.finish_run(rid, "done", summary={})
        rows = linear_convergence_rows(store, fit_from=0.5)
    assert len(rows) == 1 and rows[0]["optimizer"] == "gd" and rows[0]["width"] == 2.0
    assert math.exp(rows[0]["slope"]) == pytest.approx(0.9)
    assert rows[0]["final_loss"] == pytest.approx(0.9**20)


@pytest.mark.parametrize(
    "argv",
    [
        ["nope"],
        ["patch-heatmap", "--preset", "huge"],
        ["patch-heatmap", "--seeds", "a"],
        ["linear-convergence", "--widths", "0x"],
        ["linear-convergence", "--fit-from", "1.5"],
        ["linear-convergence", "--rho", "-1"],
    ],
)
def test_bad_input_exits_2_with_one_line(argv, tmp_path, capsys):
    assert main([*argv, "--results", str(tmp_path)] if argv != ["nope"] else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("theory.py: error:"), err
    assert not (tmp_path / "runs.sqlite").exists()


def test_patch_heatmap_smoke_end_to_end(tmp_path, capsys):
    assert main(["patch-heatmap", "--preset", "smoke", "--results", str(tmp_path)]) == 0
    assert (tmp_path / "figures" / "patch_heatmap_w1.png").stat().st_size > 0
    with Store(tmp_path / "runs.sqlite") as store:
        runs = store.runs(status="done")
    assert len(runs) == 2 * 2 * 2  # 2 signal strengths x 2 dims x (GD, SAM)
    cells = {
        (r["config"]["run"]["workload_config"]["signal_strength"], r["optimizer"]) for r in runs
    }
    assert cells == {(1.0, "sgd"), (1.0, "sam"), (4.0, "sgd"), (4.0, "sam")}

    # the report regenerates the heatmap from the store alone
    figure = tmp_path / "figures" / "patch_heatmap_w1.png"
    figure.unlink()
    from runners.report import main as report_main

    assert report_main(["--results", str(tmp_path), "--sections", "theory"]) == 0
    assert figure.stat().st_size > 0


def test_linear_convergence_tiny_end_to_end(tmp_path, capsys):
    argv = ["linear-convergence", "--widths", "1x", "--steps", "5", "--results", str(tmp_path)]
    assert main(argv) == 0
    table = (tmp_path / "tables" / "linear_convergence.md").read_text()
    assert "| 1x | 10,201 | gd |" in table and "| 1x | 10,201 | sam |" in table
    assert (tmp_path / "figures" / "linear_convergence.png").exists()
