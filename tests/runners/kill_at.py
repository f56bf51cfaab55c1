"""runners/run.py, killed by SIGKILL at one exact point of its SAM run (a test tool).

    python tests/runners/kill_at.py POINT -- <run.py arguments>

POINT (epochs E are 1-based: the epoch whose end is logged and checkpointed):
    batch:E:J           before batch J (0-based) of epoch E is trained (J=0: between epochs)
    before-save:E       epoch E's metric row is committed, its checkpoint not yet written
    mid-replace:E       inside epoch E's checkpoint write: latest renamed to .prev, the new
                        file not yet renamed into place (only .prev and .tmp on disk)
    in-transaction:E    inside the store transaction of epoch E's metric row, half written

The wrapping is done here, by the test, around the unchanged production code; the production
code has no test hooks. If the point is never reached, run.py finishes and exits normally,
which the tests treat as a failure to inject.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import results.store
import runners.engine.train
import runners.run


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    point, sep, *run_args = sys.argv[1:]
    assert sep == "--", __doc__
    kind, *nums = point.split(":")
    epoch = int(nums[0])
    current: dict[str, Any] = {"sam": False}

    real_train_run = runners.run.train_run

    def train_run(workload, cfg, store, ex):  # only the SAM run of the grid is killed
        current["sam"] = cfg.optimizer == "sam"
        return real_train_run(workload, cfg, store, ex)

    runners.run.train_run = train_run

    if kind == "batch":
        batch = int(nums[1])
        real_create = runners.run.create_workload

        def create_workload(*args, **kwargs):
            workload = real_create(*args, **kwargs)
            real_batches = workload.train_batches

            def train_batches(e, generator):
                for j, b in enumerate(real_batches(e, generator)):
                    if current["sam"] and (e + 1, j) == (epoch, batch):
                        _die()
                    yield b

            workload.train_batches = train_batches
            return workload

        runners.run.create_workload = create_workload

    elif kind in ("before-save", "mid-replace"):
        real_save = runners.engine.train.save_checkpoint

        def save_checkpoint(path, payload):
            if current["sam"] and payload["state"]["epoch"] == epoch:
                if kind == "before-save":
                    _die()
                real_replace, calls = os.replace, []

                def replace(src, dst):  # 1st: latest -> .prev; 2nd: .tmp -> latest
                    calls.append(dst)
                    if len(calls) == 2:
                        _die()
                    real_replace(src, dst)

                os.replace = replace
            real_save(path, payload)

        runners.engine.train.save_checkpoint = save_checkpoint

    elif kind == "in-transaction":
        real_log = results.store.Store.log_metrics

        def log_metrics(self, run_id, step, ep, metrics):
            if current["sam"] and ep == epoch:
                rows = [(run_id, step, ep, k, float(v)) for k, v in metrics.items()]
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR REPLACE INTO metrics (run_id, step, epoch, key, value) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows[: len(rows) // 2],
                )
                _die()
            real_log(self, run_id, step, ep, metrics)

        results.store.Store.log_metrics = log_metrics
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    return runners.run.main(run_args)


if __name__ == "__main__":
    sys.exit(main())
