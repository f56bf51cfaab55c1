"""SAM-PPO vs PPO training speed (env steps/s), measured side by side in one process.

Builds one PPO and one SAM-PPO (domains/rl/sam_ppo.py) on the same workload, width and seed,
then alternates short ``learn`` blocks of each (``--block`` env steps) so that machine drift
hits both alike, and reports the median steps/s of each and the median per-round ratio.
Rollout collection is the same for both; only the updates differ (two forward-backward passes
per minibatch under SAM), so the ratio is well below the 2x of a pure train step.

    python benchmarks/rl_ppo_speed.py --workload cartpole-ppo --width 1x [--rounds 5]
    python benchmarks/rl_ppo_speed.py --workload atari-ppo --width 0.5x --block 2048 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from domains import create_workload
from samcore.width import parse_width


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="cartpole-ppo")
    p.add_argument("--width", default="1x")
    p.add_argument("--preset", default="quick")
    p.add_argument("--rho", type=float, default=0.05)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--block", type=int, default=4096, help="env steps per learn block")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from stable_baselines3 import PPO

    from domains.rl.sam_ppo import SAMPPO

    workload = create_workload(args.workload, args.preset, subproc_envs=False)
    c, width = workload.config, parse_width(args.width)
    policy = "CnnPolicy" if args.workload.startswith("atari") else "MlpPolicy"
    make_env = getattr(workload, "make_env", None) or workload._make_env
    kw = dict(
        n_steps=c.n_steps,
        batch_size=c.batch_size,
        n_epochs=c.num_epochs,
        learning_rate=c.learning_rate,
        policy_kwargs=workload.policy_kwargs(width),
        seed=0,
        device=args.device,
    )
    models = {
        "ppo": PPO(policy, make_env(c.num_envs, 0, True), **kw),
        "sam": SAMPPO(policy, make_env(c.num_envs, 0, True), rho=args.rho, **kw),
    }
    rates: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.rounds + 1):  # round 0 warms up (allocations, first episodes)
        for name, model in models.items():
            t0, n0 = time.perf_counter(), model.num_timesteps
            model.learn(args.block, reset_num_timesteps=False)  # whole rollouts: >= block steps
            if r:
                rates[name].append((model.num_timesteps - n0) / (time.perf_counter() - t0))
    ratios = [p_ / s for p_, s in zip(rates["ppo"], rates["sam"])]
    print(
        f"{args.workload} w{args.width} ({args.device}, {args.threads} thread(s), "
        f"{args.rounds} rounds of {args.block} steps): "
        f"PPO {statistics.median(rates['ppo']):,.0f} steps/s, "
        f"SAM-PPO {statistics.median(rates['sam']):,.0f} steps/s, "
        f"time ratio SAM/PPO {statistics.median(ratios):.2f}x"
    )


if __name__ == "__main__":
    main()
