"""What a run records outside its metric rows: how it is executed (``Execution``), its loop
state (``RunState``, what a checkpoint resumes from), its row at the start (``record_start``:
config, code version, hardware) and its summary at the end (``finish_run``: both protocols'
numbers, counts, data identity).

``runners/engine/train.py`` (the shared loop) and ``runners/engine/owned_loop.py`` (workloads
whose library owns the loop) both write runs through these.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from domains.workload import Workload
from results.store import Store
from runners.engine.config import RunConfig, preset_changes


@dataclass(frozen=True)
class Execution:
    """How to run (not part of the run's identity)."""

    device: str = "cpu"
    results_dir: Path = Path("runs")  # runners.engine.cli.DEFAULT_RESULTS
    progress: bool = True
    verbose: bool = False
    channels_last: bool = False  # conv weights and activations NHWC (tensor cores on CUDA)
    compile: bool = False  # torch.compile the model for the training steps
    # At an evaluation, write the checkpoint only if this many seconds passed since the run's
    # last one (0: at every evaluation). The last epoch's is always written. A checkpoint of a
    # large model costs tens of ms (serialize, checksum, fsync): at one per epoch of a
    # full-batch workload it was ~12% of a run (planetoid-cora 16x, issue 21). Resuming stays
    # exact either way; a kill only repeats more epochs, whose rows are replaced.
    checkpoint_every_s: float = 0.0


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str  # done | diverged | failed | skipped
    summary: dict[str, Any]
    message: str


@dataclass
class RunState:
    """One run's loop bookkeeping: what a checkpoint resumes from (stored as plain data)."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    wall_time_s: float = 0.0  # training time (an ensemble member: its share)
    examples: int = 0  # training examples seen
    passes: int = 0  # forward-backward passes (a SAM step costs two)
    best: dict[str, Any] | None = None  # {epoch, step, val, test} at the best val/<target>
    last: dict[str, Any] | None = None  # the same at the last evaluation (final protocol)
    diverged_step: int | None = None  # first step with a non-finite loss, if any

    def to_payload(self) -> dict[str, Any]:
        """Plain data for the checkpoint (``torch.load(weights_only=True)`` reads it back);
        optional fields only when set, the layout checkpoints always had."""
        payload = {
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "wall_time_s": self.wall_time_s,
            "examples": self.examples,
            "passes": self.passes,
        }
        if self.last is not None:
            payload["last"] = self.last
        if self.diverged_step is not None:
            payload["diverged_step"] = self.diverged_step
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> RunState:
        """The inverse of ``to_payload`` (checked by ``restore_training_state`` first)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in payload.items() if k in names})


@dataclass
class Member:
    """One run the loop trains: its config, state, stored config and, once closed, its end."""

    cfg: RunConfig
    state: RunState
    full_config: dict[str, Any]
    closed: tuple[str, str | None] | None = None  # (status, error): trained no further
    checkpointed_at: float = field(default_factory=time.monotonic)  # the last write (or start)


@functools.cache  # once per process: the code that runs is the code imported at its start
def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if dirty else "")


def hardware_string(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return (
        f"{platform.node()} {device.type}:{name or platform.machine()} "
        f"threads={torch.get_num_threads()} torch={torch.__version__}"
    )


def checkpoint_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "checkpoints" / f"{run_id}.pt"


def record_start(
    store: Store, cfg: RunConfig, ex: Execution, domain: str, n_params: int | None
) -> dict[str, Any]:
    """Write the run's row as ``running``; returns the full config stored with it
    (``n_params`` None: the model was never built)."""
    full_config = {
        "run": cfg.to_dict(),
        "execution": {
            "device": ex.device,
            "results_dir": str(ex.results_dir),
            "channels_last": ex.channels_last,
            "compile": ex.compile,
        },
    }
    changed = preset_changes(cfg)
    if changed is not None:  # a registered workload: the fields it changed from its preset
        full_config["changed_from_preset"] = changed
    store.start_run(
        cfg.run_id,
        name=cfg.run_name(),
        workload=cfg.workload,
        domain=domain,
        optimizer=cfg.optimizer,
        base_optimizer=cfg.base_optimizer,
        width=cfg.width,
        seed=cfg.seed,
        rho=cfg.rho,
        preset=cfg.preset,
        config=full_config,
        n_params=n_params,
        git_commit=git_commit(),
        hardware=hardware_string(torch.device(ex.device)),
    )
    return full_config


def data_identity_summary(workload: Workload) -> dict[str, Any]:
    """``{"data": ...}`` for the summary: the files the run's data came from (sizes, SHA-256)
    or its generator's parameters, so a damaged or user-variant data set is visible in the
    store (issue 20, finding 2); not part of the run id. Empty when the workload knows none."""
    identity = workload.data_identity()
    return {"data": identity} if identity else {}


def finish_run(
    store: Store, ex: Execution, workload: Workload, n_params: int, member: Member, **extra: Any
) -> RunOutcome:
    """Store a trained member's summary and final status (``extra`` goes into the summary).

    ``final/*`` is the last evaluation of a run that finished (status done), which is the last
    epoch's; a diverged or failed run has no final model to report (None)."""
    target, st, run_id = workload.target, member.state, member.cfg.run_id
    status, error = member.closed or ("done", None)
    best = st.best or {}
    last = (st.last or {}) if status == "done" else {}
    summary = {
        "target": target.name,
        "target_mode": target.mode,
        **({"target_unit": unit} if (unit := getattr(target, "label", "")) else {}),
        "n_params": n_params,
        "best/epoch": best.get("epoch"),
        f"best/val_{target.name}": best.get("val"),
        f"best/test_{target.name}": best.get("test"),
        "final/epoch": last.get("epoch"),
        f"final/val_{target.name}": last.get("val"),
        f"final/test_{target.name}": last.get("test"),
        "steps": st.step,
        "epochs": st.epoch,
        "examples_seen": st.examples,
        "forward_backward_passes": st.passes,
        "wall_time_s": st.wall_time_s,
        **data_identity_summary(workload),
        **extra,
    }
    if st.diverged_step is not None:
        summary["diverged_step"] = st.diverged_step
    store.finish_run(
        run_id, status, summary=summary, error=error, wall_time_s=st.wall_time_s, last_step=st.step
    )
    if status == "done":  # keep only the final model
        Path(str(checkpoint_path(ex.results_dir, run_id)) + ".prev").unlink(missing_ok=True)
    return RunOutcome(run_id, status, summary, error or "")
