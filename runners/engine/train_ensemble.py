"""Several seeds of one run trained at once as a vmapped seed ensemble (samcore/ensemble.py).

A mode of the one epoch loop (``runners.engine.train.train_members``): ``SeedStack`` is the
``Trainee`` that steps all seeds together, and each seed is a ``Member`` with its own state,
metric rows, checkpoint and summary, written by the same code as a single run's.

Used by ``runners/run.py`` for ``--seeds`` with more than one seed when the workload declares
``supports_seed_ensemble`` (small models without batch norm or dropout) and the run uses
none of micro-batching, m-sharpness, fp16/bf16 or late-phase SAM. Each seed is exactly the
run that ``train_run`` would make for it: the same initial weights (built from the seed's own
init stream), the same batches in the same order (the seed's own data-order generator per
epoch), the same optimizer, schedule and SAM radius (SAM's norm per seed), the same run id,
metric rows, summary and checkpoint (a sequential ``train_run`` resumes it exactly).
Results equal the sequential runs up to float rounding (tests/runners/test_seed_ensemble.py).

Differences, by design: the execution flags ``--compile`` and ``--channels-last`` do not
apply (the supported models are small MLPs); ``time/wall_s`` is the ensemble's wall time
divided by the number of seeds (their share of the machine), and the summary says
``seed_ensemble: S``. Resume: seeds already done are skipped, and a seed that has a row but is
not done (killed mid-run) resumes from its own checkpoint through ``train_run``; only fresh
seeds are trained together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from domains.workload import Workload
from results.store import Store
from runners.engine.checkpoint import capture_rng_state
from runners.engine.config import RunConfig
from runners.engine.lease import leased
from runners.engine.train import (
    Execution,
    Member,
    RunOutcome,
    RunState,
    finish_run,
    record_start,
    run_label,
    run_optimizer,
    run_scheduler,
    train_members,
    train_run,
)
from samcore import (
    SAM,
    StepResult,
    build_optimizer,
    count_params,
    make_generator,
    seed_everything,
    stream_seed,
)
from samcore.ensemble import SeedEnsemble, build_ensemble_optimizer, stack_batches

__all__ = ["can_use_seed_ensemble", "train_seeds", "SeedStack"]


def can_use_seed_ensemble(workload: Workload, cfg: RunConfig) -> bool:
    """The workload allows it and the run needs nothing the ensemble does not do."""
    return (
        bool(getattr(workload, "supports_seed_ensemble", False))
        and not workload.owns_loop
        and cfg.m_sharpness == 0
        and cfg.micro_batch_size == 0
        and cfg.precision == "fp32"
        and (cfg.sam_start, cfg.sam_end) == (0.0, 1.0)  # late-phase SAM: sequential runs
    )


@leased  # the group's free seeds are claimed; held ones come back skipped
def train_seeds(
    workload: Workload, cfgs: list[RunConfig], store: Store, ex: Execution
) -> list[RunOutcome]:
    """Train runs that differ only in their seed; fresh ones as one ensemble."""
    outcomes: dict[str, RunOutcome] = {}
    fresh = []
    for cfg in cfgs:
        if store.get_run(cfg.run_id) is None:
            fresh.append(cfg)
        else:  # done: skipped; killed or failed: resumed from its checkpoint, exactly
            outcomes[cfg.run_id] = train_run(workload, cfg, store, ex)
    if len(fresh) == 1:
        outcomes[fresh[0].run_id] = train_run(workload, fresh[0], store, ex)
    elif fresh:
        trainee = SeedStack(workload, fresh, ex)
        members = []
        for cfg in fresh:
            store.delete_metrics_after(cfg.run_id, -1)
            full_config = record_start(store, cfg, ex, workload.domain, trainee.n_params)
            members.append(Member(cfg, RunState(), full_config))
        train_members(workload, trainee, members, store, ex)
        for m in members:
            outcomes[m.cfg.run_id] = finish_run(
                store,
                ex,
                workload,
                trainee.n_params,
                m,
                seed_ensemble=len(fresh),
                precision=m.cfg.precision,
            )
    return [outcomes[cfg.run_id] for cfg in cfgs]


class SeedStack:
    """The ``Trainee`` of a seed ensemble: S fresh runs' models stacked into one
    ``SeedEnsemble`` under one (per-seed) optimizer, each seed's batches stacked per step."""

    def __init__(self, workload: Workload, cfgs: list[RunConfig], ex: Execution) -> None:
        device = torch.device(ex.device)
        self.workload, self.cfgs = workload, cfgs
        self.models, self.rng_states = [], []
        for cfg in cfgs:  # each seed's init exactly as train_run draws it
            seed_everything(cfg.seed)
            torch.manual_seed(stream_seed(cfg.seed, "init"))
            self.models.append(workload.build_model(cfg.width).to(device))
            seed_everything(stream_seed(cfg.seed, "dropout"))
            self.rng_states.append(capture_rng_state())  # the supported models draw nothing
        self.n_params = count_params(self.models[0])
        self.num_members = len(cfgs)
        self.module = self.ens = SeedEnsemble(self.models)
        self.loss_fn = self.ens.loss_fn(workload.loss)
        self.optimizer = run_optimizer(cfgs[0], workload.config, self.ens, build_ensemble_optimizer)
        self.scheduler = run_scheduler(self.optimizer, workload)
        self.scaler = None
        seeds = ",".join(str(cfg.seed) for cfg in cfgs)
        self.label = run_label(cfgs[0], f"seeds {seeds} (ensemble)")

    def train(self) -> None:
        self.ens.train()

    def batches(self, epoch: int) -> Iterable[Any]:
        iters = [
            self.workload.train_batches(epoch, make_generator(cfg.seed, f"data-order/{epoch}"))
            for cfg in self.cfgs
        ]
        return (stack_batches(seed_batches) for seed_batches in zip(*iters))

    def member_losses(self, res: StepResult) -> torch.Tensor:
        return res.metrics["seed/loss"]

    def member_model(self, s: int) -> torch.nn.Module:
        return self.ens.load_seed_into(s, self.models[s])

    def checkpoint(self, s: int) -> dict[str, Any]:
        self.member_model(s)
        return {
            "model": self.models[s].state_dict(),
            "optimizer": self._seed_optimizer_state(s),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None,
            "rng": self.rng_states[s],
        }

    def _seed_optimizer_state(self, s: int) -> dict[str, Any]:
        """Seed ``s``'s slice of the ensemble optimizer, as the state_dict of the optimizer
        that a sequential run of that seed would hold (so ``train_run`` can resume it)."""
        model, cfg = self.models[s], self.cfgs[s]
        single = run_optimizer(cfg, self.workload.config, model, build_optimizer)
        base_single = single.base_optimizer if isinstance(single, SAM) else single
        ens_opt = self.optimizer
        base_ens = ens_opt.base_optimizer if isinstance(ens_opt, SAM) else ens_opt
        for name, stacked in zip(self.ens.names, self.ens.stacked):
            state = base_ens.state.get(stacked)
            if state:  # per-seed tensors have the seed dim first; Adam's step count is shared
                base_single.state[model.get_parameter(name)] = {
                    k: v[s].clone() if torch.is_tensor(v) and v.ndim > 0 else v
                    for k, v in state.items()
                }
        for g_single, g_ens in zip(single.param_groups, ens_opt.param_groups):
            g_single.update({k: v for k, v in g_ens.items() if k != "params"})  # lr, initial_lr
        return single.state_dict()
