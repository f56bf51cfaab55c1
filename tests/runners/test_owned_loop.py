"""Workloads whose library owns the loop (Workload.fit, e.g. SB3's PPO) still land in the store."""

from __future__ import annotations

import torch
from torch import nn

from domains.workload import FitRequest, Target, TrainConfig, Workload
from results.store import Store
from runners.engine.config import RunConfig
from runners.engine.train import Execution, train_run
from samcore import SAM


class _OwnLoop(Workload):
    target = Target("reward", "max")
    widths = (1.0, 2.0)
    owns_loop = True
    requests: list[FitRequest] = []

    def build_model(self, width: float) -> nn.Module:
        return nn.Linear(4, int(8 * width))

    def fit(self, request: FitRequest) -> dict[str, float]:
        self.requests.append(request)
        if request.width == 2.0:
            raise RuntimeError("environment crashed")
        model = self.build_model(request.width)
        opt = SAM(model.parameters(), torch.optim.SGD, rho=request.rho, lr=0.1)
        for step in range(1, 4):
            opt.two_pass_step(lambda: _closure(opt, model))
            request.log(step, {"train/reward": float(step)})
        # the best checkpoint (step 2) and the last evaluation (step 3) differ
        return {
            "val/reward": 3.0,
            "test/reward": 2.5,
            "best_step": 2.0,
            "final_val/reward": 2.0,
            "final_test/reward": 1.5,
            "final_step": 3.0,
        }


def _closure(opt, model):
    opt.zero_grad()
    loss = model(torch.ones(2, 4)).pow(2).mean()
    loss.backward()
    return loss


def _cfg(width):
    return RunConfig(
        workload="own-loop",
        preset="smoke",
        width=width,
        optimizer="sam",
        base_optimizer="sgd",
        rho=0.1,
        seed=3,
    )


def test_owned_loop_run_is_stored_and_failures_are_recorded(tmp_path):
    workload = _OwnLoop(TrainConfig())
    workload.name, workload.domain = "own-loop", "rl"
    store = Store(tmp_path / "runs.sqlite")
    ex = Execution(results_dir=tmp_path, progress=False)
    out = train_run(workload, _cfg(1.0), store, ex)
    assert out.status == "done"
    row = store.get_run(out.run_id)
    assert row["status"] == "done" and row["n_params"] == 4 * 8 + 8
    s = row["summary"]
    assert (s["best/val_reward"], s["best/test_reward"], s["best/step"]) == (3.0, 2.5, 2.0)
    assert (s["final/val_reward"], s["final/test_reward"], s["final/step"]) == (2.0, 1.5, 3.0)
    assert s["best/epoch"] is None and s["final/epoch"] is None  # no epochs in an owned loop
    assert [m["value"] for m in store.metrics(out.run_id)] == [1.0, 2.0, 3.0]
    req = workload.requests[0]
    assert (
        req.sam
        and req.rho == 0.1
        and req.seed == 3
        and req.checkpoint_dir.parent.name == "checkpoints"
    )

    failed = train_run(workload, _cfg(2.0), store, ex)
    assert (
        failed.status == "failed" and "environment crashed" in store.get_run(failed.run_id)["error"]
    )
    assert train_run(workload, _cfg(1.0), store, ex).status == "skipped"
