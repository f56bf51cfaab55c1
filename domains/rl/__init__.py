"""rl domain (issue 8): PPO and SAM-PPO (stable-baselines3) with width-scaled policies.

``cartpole-ppo`` (default) and ``acrobot-ppo``: MLP policies, CPU-sized (classic.py).
``atari-ppo``: Breakout by default, Nature-CNN x{0.5, 1, 1.5, 2} (atari.py).
SAM inside PPO: sam_ppo.py. gymnasium / stable_baselines3 / ale_py (``pip install -e .[rl]``)
are imported only when a run or a model is built.
"""

from domains.rl import atari, classic  # noqa: F401  (registers the workloads)
