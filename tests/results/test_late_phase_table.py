"""results/late_phase.py from a store with known rows: means, relative cost, share of SAM's
gain, and lambda_max read only when the store has measures."""

from __future__ import annotations

import pytest

from results.late_phase import late_phase_rows, late_phase_table
from results.store import Store
from runners.report import main
from tests.results.known_store import start_toy_run


def _add(store, rid, optimizer, seed, test, passes, start=0.0):
    run = {"sam_start": start, "sam_end": 1.0} if optimizer == "sam" else {}
    start_toy_run(
        store,
        rid,
        workload="mnist-mlp",
        domain="vision",
        optimizer=optimizer,
        seed=seed,
        rho=0.1 if optimizer == "sam" else 0.0,
        config={"run": run},
        n_params=266_610,
    )
    summary = {
        "target": "acc",
        "target_mode": "max",
        "best/test_acc": test,
        "forward_backward_passes": passes,
    }
    store.finish_run(rid, "done", summary=summary)


class _MeasuredStore(Store):
    def measures(self, run_id, name):
        return (
            [{"value": {"late": 5.0, "sam": 4.0}.get(run_id, 9.0)}] if name == "lambda_max" else []
        )


@pytest.mark.parametrize("cls", [Store, _MeasuredStore])
def test_late_phase_rows(tmp_path, cls):
    with cls(tmp_path / "runs.sqlite") as store:
        _add(store, "b0", "sgd", 0, 97.0, 100)
        _add(store, "b1", "sgd", 1, 97.2, 100)
        _add(store, "sam", "sam", 0, 97.6, 200)
        _add(store, "late", "sam", 0, 97.45, 112, start=0.875)
        rows = late_phase_rows(store, "mnist-mlp")
        text = late_phase_table(store, "mnist-mlp")
    assert [r["schedule"] for r in rows] == ["base", "SAM [0, 1)", "SAM [0.875, 1)"]
    base, sam, late = rows
    assert base["test"][0] == pytest.approx(97.1) and base["seeds"] == 2
    assert sam["relative_cost"] == 2.0 and late["relative_cost"] == pytest.approx(1.12)
    assert late["gain_recovered"] == pytest.approx((97.45 - 97.1) / (97.6 - 97.1))
    if cls is Store:
        assert late["lambda_max"] is None and "| - |" in text
    else:
        assert late["lambda_max"][0] == 5.0 and sam["lambda_max"][0] == 4.0
    assert "| 1x | SAM [0.875, 1) | 0.1 |" in text


def test_cli_without_store_exits_2(tmp_path, capsys):
    """The table is the report's late_phase section (no command of its own)."""
    assert main(["--results", str(tmp_path), "--sections", "late_phase"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_share_is_undefined_when_sam_did_not_help(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "b0", "sgd", 0, 97.4, 100)
        _add(store, "sam", "sam", 0, 97.3, 200)
        _add(store, "late", "sam", 0, 97.5, 112, start=0.875)
        rows = late_phase_rows(store, "mnist-mlp")
    assert [r["gain_recovered"] for r in rows] == [None, None, None]


def test_two_presets_are_not_pooled(tmp_path):
    # issue 17: the late-phase table pooled runs across presets and overrides
    with Store(tmp_path / "runs.sqlite") as store:
        for preset, base, late in (("quick", 90.0, 91.0), ("paper", 98.0, 98.5)):
            for rid, opt, test, passes, start in (
                ("b", "sgd", base, 100, 0.0),
                ("s", "sam", base + 2.0, 200, 0.0),
                ("l", "sam", late, 110, 0.5),
            ):
                run = {"preset": preset}
                if opt == "sam":
                    run.update({"sam_start": start, "sam_end": 1.0})
                start_toy_run(
                    store,
                    f"{preset}-{rid}",
                    workload="mnist-mlp",
                    optimizer=opt,
                    rho=0.1 if opt == "sam" else 0.0,
                    preset=preset,
                    config={"run": run},
                )
                store.finish_run(
                    f"{preset}-{rid}",
                    "done",
                    summary={
                        "target": "acc",
                        "target_mode": "max",
                        "best/test_acc": test,
                        "forward_backward_passes": passes,
                    },
                )
        rows = late_phase_rows(store, "mnist-mlp")
        text = late_phase_table(store, "mnist-mlp")
    assert len(rows) == 6 and all(r["seeds"] == 1 for r in rows)  # pooled: 3 rows of 2 seeds
    by = {(r["setup"], r["schedule"]): r for r in rows}
    assert by[("preset=quick", "base")]["test"][0] == 90.0
    # each late schedule against its own preset's base and full SAM: (91 - 90) / 2, 0.5 / 2
    assert by[("preset=quick", "SAM [0.5, 1)")]["gain_recovered"] == pytest.approx(0.5)
    assert by[("preset=paper", "SAM [0.5, 1)")]["gain_recovered"] == pytest.approx(0.25)
    assert "[preset=quick]" in text and "[preset=paper]" in text
