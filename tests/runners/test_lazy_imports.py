"""A run imports only what its workload needs (issue 21, where time goes: a sweep starts one
process per run, and each paid seconds of imports before its first step).

Checked in a fresh interpreter, where ``sys.modules`` starts empty: importing ``runners.run``,
listing every workload (which imports every domain package) and creating, setting up and
building a synthetic-regression model must not import the graph, RL or language libraries,
nor scipy (run.py's result table needs it, after training only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

# the optional domains' libraries, and scipy (~0.8 s of CPU, only for run.py's final table)
HEAVY = (
    "torch_geometric",
    "stable_baselines3",
    "gymnasium",
    "transformers",
    "datasets",
    "torchvision",
    "scipy",
)

_CHILD = """
import json, sys
import torch
import runners.run
from domains import create_workload, list_workloads

names = list_workloads()  # imports every domain package (registration)
w = create_workload("synthetic-regression", "smoke")
w.setup_data(None, torch.device("cpu"))
model = w.build_model(2.0)
loss, _ = w.loss(model, next(w.train_batches(0, torch.Generator().manual_seed(0))))
loss.backward()
print(json.dumps({"names": names, "loaded": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def _child(code: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{code}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_synthetic_run_imports_no_optional_domain_library():
    out = _child(_CHILD)
    assert out["loaded"] == []
    # registration still lists every domain's workloads, light as it is
    for name in ("synthetic-regression", "mnist-mlp", "planetoid-cora", "acrobot-ppo", "sst2-lstm"):
        assert name in out["names"]
