"""S seeds as one vmapped model (samcore/ensemble.py) against S sequential models, side by side.

For each workload, S models (each seed's own init) and S per-seed batch streams; one round
times ``--steps`` training steps of all S seeds done one model after another (what S
sequential runs do, through ``train_step``) and the same steps done by the ensemble (one
vmapped ``train_step`` over the stacked seeds). Rounds alternate, so drift hits both alike;
the median per-round ratio sequential/ensemble is the speed-up. Base and SAM both.

It also times the ensemble's matrix products alone (each Linear's forward, weight-gradient
and input-gradient ``bmm`` for S seeds, twice for SAM): no way of batching seeds can beat S
sequential runs by more than sequential time / that floor, which is what bounds a
compute-bound model such as the MNIST MLP.

    python benchmarks/seed_ensemble.py [--seeds 8] [--rounds 7] [--steps 10] [--threads 2]
    SAM_DATA=/path/to/data python benchmarks/seed_ensemble.py --workloads mnist-mlp
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from domains import create_workload, resolve_data_root
from samcore import build_optimizer, make_generator, train_step
from samcore.ensemble import SeedEnsemble, build_ensemble_optimizer, stack_batches

# (workload, preset, width): the workloads that declare supports_seed_ensemble, at 1x.
WORKLOADS = {"synthetic-regression": "quick", "mnist-mlp": "quick"}


def _batches(workload, seed: int, n: int) -> list:
    out = []
    for batch in workload.train_batches(0, make_generator(seed, "data-order/0")):
        out.append(batch)
        if len(out) == n:
            return out
    return out


def measure(name: str, preset: str, seeds: int, rounds: int, steps: int, sam: bool) -> float:
    workload = create_workload(name, preset)
    workload.setup_data(resolve_data_root(None), torch.device("cpu"))
    c = workload.config
    kw = dict(lr=c.learning_rate, momentum=c.momentum, weight_decay=c.weight_decay, sam=sam)

    def model(seed: int):
        torch.manual_seed(seed)
        return workload.build_model(1.0)

    seq_models = [model(s) for s in range(seeds)]
    seq_opts = [build_optimizer(m, c.optimizer, **kw) for m in seq_models]
    ens = SeedEnsemble([model(s) for s in range(seeds)])
    ens_opt = build_ensemble_optimizer(ens, c.optimizer, **kw)
    ens_loss = ens.loss_fn(workload.loss)
    data = [_batches(workload, s, steps) for s in range(seeds)]
    stacked = [stack_batches([data[s][t] for s in range(seeds)]) for t in range(steps)]

    def sequential() -> float:
        t0 = time.perf_counter()
        for m, o, d in zip(seq_models, seq_opts, data):  # run after run, as the runner did
            for batch in d:
                train_step(m, o, workload.loss, batch)
        return time.perf_counter() - t0

    def ensemble() -> float:
        t0 = time.perf_counter()
        for batch in stacked:
            train_step(ens, ens_opt, ens_loss, batch)
        return time.perf_counter() - t0

    linears = [m for m in seq_models[0].modules() if isinstance(m, nn.Linear)]
    floor = _matmul_floor(linears, seeds, c.batch_size, passes=2 if sam else 1)

    sequential(), ensemble()  # warm-up
    ratios, t_seq, t_ens = [], [], []
    for _ in range(rounds):
        t_seq.append(sequential())
        t_ens.append(ensemble())
        ratios.append(t_seq[-1] / t_ens[-1])
    ratio = statistics.median(ratios)
    n_params = sum(p.numel() for p in seq_models[0].parameters())
    seq_step = statistics.median(t_seq) / steps
    print(
        f"{name} 1x ({n_params:,} params, batch {c.batch_size}) {'SAM ' if sam else 'base'}: "
        f"{seeds} sequential {seq_step * 1e3:.1f} ms/step, ensemble "
        f"{statistics.median(t_ens) / steps * 1e3:.1f} ms/step -> {ratio:.2f}x faster "
        f"(median of {rounds} rounds x {steps} steps); its matrix products alone "
        f"{floor * 1e3:.1f} ms, so at most {seq_step / floor:.1f}x",
        flush=True,
    )
    return ratio


def _matmul_floor(linears: list[nn.Linear], seeds: int, batch: int, passes: int) -> float:
    """Seconds per step of the ensemble's bmm calls alone (median of 7 timings)."""
    mats = []
    for i, layer in enumerate(linears):
        x = torch.randn(seeds, batch, layer.in_features)
        w = torch.randn(seeds, layer.out_features, layer.in_features)
        g = torch.randn(seeds, batch, layer.out_features)
        mats.append((x, w, g, i > 0))  # the first layer needs no input gradient

    def products() -> None:
        for x, w, g, input_grad in mats:
            torch.bmm(x, w.transpose(1, 2))
            torch.bmm(g.transpose(1, 2), x)
            if input_grad:
                torch.bmm(g, w)

    products()
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(5):
            products()
        times.append((time.perf_counter() - t0) / 5)
    return passes * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (default: as OMP_NUM_THREADS / torch decide); the "
        "ensemble's larger ops can use more cores than one small model's",
    )
    args = p.parse_args()
    unknown = sorted(set(args.workloads.split(",")) - set(WORKLOADS))
    if unknown:
        p.error(f"--workloads: {', '.join(unknown)} not one of {', '.join(WORKLOADS)}")
    if args.seeds < 2 or args.rounds < 1 or args.steps < 1:
        p.error("--seeds must be >= 2, --rounds and --steps >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU "
        f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start); "
        f"S = {args.seeds}, target >= 3x"
    )
    for name in args.workloads.split(","):
        for sam in (False, True):
            measure(name, WORKLOADS[name], args.seeds, args.rounds, args.steps, sam)


if __name__ == "__main__":
    main()
