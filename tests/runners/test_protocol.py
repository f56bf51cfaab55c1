"""Both reporting protocols are stored with every run (best validation epoch and final
epoch), and the experiment's choice (``RunConfig.protocol``) flows from run.py and sweep
specs into the stored config without changing the ids of runs stored before it existed."""

from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

from runners.engine.config import RunConfig
from runners.engine.sweep_spec import SpecError, load_sweep
from runners.run import main

# A run of an mnist-mlp SAM config, its id computed by runners/engine/config.py as it was before the
# protocol field existed (commit 0abe0ce): the default protocol must leave it unchanged.
OLD_RUN = dict(
    workload="mnist-mlp",
    preset="paper",
    width=4.0,
    optimizer="sam",
    base_optimizer="sgd",
    seed=2,
    rho=0.1,
    workload_config={"label_noise": 0.5, "num_epochs": 100},
)
OLD_RUN_ID = "8e9aac8ae2c36ed169c1"


def test_protocol_is_out_of_the_run_id_at_its_default_only():
    assert RunConfig(**OLD_RUN).run_id == OLD_RUN_ID
    assert RunConfig(**OLD_RUN, protocol="best-val").run_id == OLD_RUN_ID
    final = RunConfig(**OLD_RUN, protocol="final")
    assert final.run_id != OLD_RUN_ID
    assert RunConfig.from_dict(json.loads(json.dumps(final.to_dict()))).run_id == final.run_id
    with pytest.raises(ValueError, match="protocol must be one of"):
        RunConfig(**OLD_RUN, protocol="last")


def _eval_rows(db, run_id):
    """{epoch: {key: value}} of the rows that hold an evaluation."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT epoch, key, value FROM metrics WHERE run_id = ? AND key LIKE '%/mse'",
            (run_id,),
        ).fetchall()
    out: dict[int, dict[str, float]] = {}
    for epoch, key, value in rows:
        out.setdefault(epoch, {})[key] = value
    return out


@pytest.mark.parametrize("seeds", ["0", "0,1"])  # one run; two seeds as one seed ensemble
def test_summary_holds_best_val_and_final_epoch_metrics(tmp_path, seeds):
    """best/* at the epoch of the lowest val/mse, final/* at the last epoch, both read back
    from the stored metric rows; --protocol lands in config["run"]["protocol"], the precision
    in the stored config and the summary."""
    epochs = 4
    argv = ["--domain", "synthetic", "--preset", "smoke", "--optimizer", "both"]
    argv += ["--seeds", seeds, "--protocol", "final", f"--num_epochs={epochs}", "--no-progress"]
    assert main([*argv, "--results", str(tmp_path)]) == 0
    db = tmp_path / "runs.sqlite"
    with sqlite3.connect(db) as con:
        runs = con.execute("SELECT id, config, summary FROM runs").fetchall()
    assert len(runs) == 2 * len(seeds.split(","))
    for run_id, config, summary in runs:
        assert json.loads(config)["run"]["protocol"] == "final"
        s, evals = json.loads(summary), _eval_rows(db, run_id)
        assert s["precision"] == json.loads(config)["run"]["precision"] == "fp32"
        assert sorted(evals) == list(range(1, epochs + 1))
        best = min(evals, key=lambda e: evals[e]["val/mse"])
        assert s["best/epoch"] == best and s["final/epoch"] == epochs
        assert s["best/val_mse"] == evals[best]["val/mse"]
        assert s["best/test_mse"] == evals[best]["test/mse"]
        assert s["final/val_mse"] == evals[epochs]["val/mse"]
        assert s["final/test_mse"] == evals[epochs]["test/mse"]


def _spec(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_sweep_protocol_key_at_the_top_and_per_entry(tmp_path):
    spec = _spec(
        tmp_path,
        """
        preset: smoke
        seeds: [0]
        optimizers: [base]
        protocol: final
        entries:
          - {workload: synthetic-regression, widths: [1x]}
          - {workload: synthetic-regression, widths: [2x], protocol: best-val}
        """,
    )
    configs = load_sweep(spec).configs
    assert [(c.width, c.protocol) for c in configs] == [(1.0, "final"), (2.0, "best-val")]
    bad = _spec(
        tmp_path,
        """
        preset: smoke
        seeds: [0]
        optimizers: [base]
        entries: [{workload: synthetic-regression, widths: [1x], protocol: last}]
        """,
    )
    with pytest.raises(SpecError, match="protocol must be one of best-val, final"):
        load_sweep(bad)


def test_paper_sweep_reports_label_noise_at_the_final_epoch():
    """sweeps/paper.yaml: the label-noise ablation (the only cifar10-resnet18 runs with
    label_noise > 0) uses the final-epoch protocol, Fig. 1's entries the best-val one."""
    from tests.conftest import REPO

    configs = load_sweep(REPO / "sweeps" / "paper.yaml").configs
    noisy = [c for c in configs if c.workload_config.get("label_noise", 0) > 0]
    assert noisy and {c.protocol for c in noisy} == {"final"}
    assert {c.workload_config["label_noise"] for c in noisy} == {0.25, 0.5, 0.75}
    fig1 = [c for c in configs if c.workload == "mnist-mlp"]
    assert fig1 and {c.protocol for c in fig1} == {"best-val"}


def test_owned_loops_refuse_reduced_precision():
    """PPO's loop (SB3) computes in fp32 whatever the run says: a bf16 run is refused, not
    stored under a precision it never used."""
    from domains import create_workload
    from runners.engine.plan import PlanError, expand_grid

    w = create_workload("cartpole-ppo", "smoke")
    kw = dict(widths=[1.0], optimizers=["base"], rhos=[0.0], seeds=[0])
    assert expand_grid(w, "smoke", **kw)[0].precision == "fp32"
    with pytest.raises(PlanError, match="fp32 only"):
        expand_grid(w, "smoke", precision="bf16", **kw)


def test_new_ppo_field_leaves_classic_run_ids_and_old_vision_configs_rebuild():
    """clip_range_vf (added for Atari's CleanRL recipe) is out of the hash at None, so a
    cartpole run keeps the id computed before the field existed (commit 0abe0ce, literal
    below); a stored vision config from before bf16 was retired still rebuilds."""
    import dataclasses

    from domains import create_workload
    from runners.engine.config import workload_for_run

    wc = dataclasses.asdict(create_workload("cartpole-ppo", "paper").config)
    assert wc["clip_range_vf"] is None
    cfg = RunConfig(
        workload="cartpole-ppo",
        preset="paper",
        width=1.0,
        optimizer="sam",
        base_optimizer="adam",
        rho=0.01,
        workload_config=wc,
    )
    assert cfg.run_id == "226dcb1af5646231fd7e"
    atari = dataclasses.asdict(create_workload("atari-ppo", "paper").config)
    assert atari["clip_range_vf"] == 0.1  # in the hash: the recipe changed

    mnist = dataclasses.asdict(create_workload("mnist-mlp", "quick").config)
    old = RunConfig(
        workload="mnist-mlp",
        preset="quick",
        width=1.0,
        optimizer="sgd",
        base_optimizer="sgd",
        workload_config={**mnist, "bf16": True},
    )
    assert dataclasses.asdict(workload_for_run(old).config) == mnist
