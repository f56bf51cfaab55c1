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


# ---------------------------------------------------------------- issue 22's experiments
@pytest.mark.parametrize(
    "argv",
    [
        ["interpolation"],  # neither run ids nor --preset
        ["interpolation", "a"],  # one run id
        ["interpolation", "a", "b", "--preset", "smoke"],  # both
        ["interpolation", "a", "b", "--points", "1"],
        ["one-d-relu", "--preset", "huge"],
        ["linear-stability", "--rho", "-1"],
    ],
)
def test_issue22_bad_input_exits_2_with_one_line(argv, tmp_path, capsys):
    assert main([*argv, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("theory.py: error:"), err


def test_one_d_relu_learning_rates_by_hand():
    from runners.engine.theory_experiments.one_d_relu import learning_rate

    assert learning_rate("quick", 5) == pytest.approx(0.01)
    assert learning_rate("quick", 1000) == pytest.approx(5e-5)
    assert learning_rate("paper", 5) == pytest.approx(3e-4)  # the notebook's LR
    assert learning_rate("paper", 1000) == pytest.approx(3e-5)  # capped below 2/lambda_max


def test_one_d_relu_stores_the_learned_function_and_the_report_redraws_it(tmp_path):
    import torch

    from runners.engine.checkpoint import load_checkpoint
    from runners.report import main as report_main

    argv = ["one-d-relu", "--preset", "smoke", "--widths", "5x", "--seeds", "0"]
    assert main([*argv, "--results", str(tmp_path), "--no-progress"]) == 0
    with Store(tmp_path / "runs.sqlite") as store:
        runs = store.runs(status="done")
        assert {r["optimizer"] for r in runs} == {"sgd", "sam"}
        for r in runs:
            d = store.measures(r["id"], "function_1d")[0]["details"]
            state = load_checkpoint(tmp_path / "checkpoints" / f"{r['id']}.pt")[0]["model"]
            w, b = state["0.weight"][:, 0], state["0.bias"]
            a = state["2.weight"][0]
            # f(x) = sum_j a_j relu(w_j x + b_j), by hand from the stored weights
            x = torch.tensor(d["x"])
            f = (torch.relu(x[:, None] * w + b) * a).sum(1)
            assert torch.allclose(f, torch.tensor(d["y"]), atol=1e-5)
            assert len(d["data_x"]) == 12
    figure = tmp_path / "figures" / "relu_1d.png"
    figure.unlink()
    assert report_main(["--results", str(tmp_path), "--sections", "theory"]) == 0
    assert figure.stat().st_size > 0


def test_lambda_max_and_moments_match_the_exact_hessian_of_a_tiny_squared_loss_mlp():
    import torch

    from domains import create_workload
    from runners.engine.measure import MeasureSettings, compute_measures, fixed_examples

    w = create_workload("mnist-mlp", "tiny", loss="mse", hidden=(3, 2))
    w.setup_data(None, torch.device("cpu"))
    model = w.build_model(1.0)
    settings = MeasureSettings(
        ("lambda_max", "moments"), n_examples=32, lanczos_iter=200, moment_samples=100
    )
    batches = fixed_examples(w, 32, 0)
    got = compute_measures(model, w, batches, settings)
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])

    def loss_of(*flat):
        out = torch.func.functional_call(model, dict(zip(names, flat)), (x,))
        one_hot = torch.nn.functional.one_hot(y, 10).float()
        return 0.5 * (out - one_hot).pow(2).sum(1).mean()  # the squared loss, by hand

    blocks = torch.autograd.functional.hessian(loss_of, tuple(params.values()), vectorize=True)
    sizes = [p.numel() for p in params.values()]
    H = torch.cat(
        [torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(len(sizes))], 1)
         for i in range(len(sizes))]
    )  # fmt: skip
    eig = torch.linalg.eigvalsh(H.double())
    assert got["lambda_max"][0] == pytest.approx(eig[-1].item(), rel=1e-3)
    n = eig.numel()
    assert got["moment_1"][0] == pytest.approx(eig.sum().item() / n, rel=0.2)
    assert got["moment_2"][0] == pytest.approx(eig.pow(2).sum().item() / n, rel=0.3)


def test_interpolation_ends_are_the_two_runs_and_the_report_redraws_it(tmp_path):
    from runners.engine.theory_experiments.interpolation import alphas
    from runners.report import main as report_main

    assert alphas(5, 0.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert alphas(5, 0.5) == [-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    argv = ["interpolation", "--preset", "smoke", "--points", "3", "--results", str(tmp_path)]
    assert main([*argv, "--no-progress"]) == 0
    with Store(tmp_path / "runs.sqlite") as store:
        (m,) = [m for m in store.measures() if m["name"].startswith("interp/")]
        run_a, run_b = m["run_id"], m["name"].split("/", 1)[1]
        d = m["details"]
        # alpha 0 and 1 are the two final models: the runner's own last evaluation of each
        last_a = store.metrics(run_a, "train/loss")[-1]["value"]
        last_b = store.metrics(run_b, "test/loss")[-1]["value"]
    assert d["alpha"] == [0.0, 0.5, 1.0]
    assert d["train_loss"][0] == pytest.approx(last_a, rel=1e-5)
    assert d["test_loss"][-1] == pytest.approx(last_b, rel=1e-5)
    figure = tmp_path / "figures" / f"interpolation_{run_a[:8]}_{run_b[:8]}.png"
    figure.unlink()
    assert report_main(["--results", str(tmp_path), "--sections", "theory"]) == 0
    assert figure.stat().st_size > 0
