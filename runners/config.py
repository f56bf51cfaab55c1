"""The run-level config: everything that, with the workload's config, defines one run.

``RunConfig.run_id`` hashes the whole experiment (workload config included) so a done run is
found again whatever order a grid is run in. Execution settings (device, paths, progress
output) are not part of the hash: the same run on another machine is the same experiment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from samcore.width import format_width

__all__ = ["RunConfig", "OPTIMIZER_CHOICES", "PRECISIONS", "PROTOCOLS", "workload_for_run"]

OPTIMIZER_CHOICES = ("base", "sam", "both", "sgd", "adam", "adamw")
PRECISIONS = ("fp32", "bf16", "fp16")
# Which stored test metric an experiment reports (every run stores both; runners/train.py):
# at the best validation epoch (the paper's Fig. 1, with validation replacing its test-set
# selection) or at the final epoch (label noise, PoS without early stopping: PAPERS.md).
PROTOCOLS = ("best-val", "final")
# Fields added after runs were stored, left out of the hash at their defaults (ids unchanged).
_HASH_OMITTED_AT_DEFAULT: dict[str, Any] = {
    "sam_start": 0.0,
    "sam_end": 1.0,
    "protocol": "best-val",
}
# Workload config fields added after runs were stored, left out of the hash at these values.
_WORKLOAD_HASH_OMITTED_AT_DEFAULT: dict[str, Any] = {
    "clip_range_vf": None,  # PPO workloads
    "loss": "ce",  # mnist-mlp's loss option (issue 22)
    "smoothness_radius": 0.0,  # vision: smoothness / PL estimate at each evaluation (issue 22)
}
# ... and those whose default differs between workloads (issue 22: hidden layers of the MLP,
# BasicBlocks per stage of the ResNet; cifar10-vit's depth was always hashed).
_WORKLOAD_HASH_OMITTED_FOR: dict[str, dict[str, Any]] = {
    "mnist-mlp": {"depth": 2},
    "cifar10-resnet18": {"depth": 2},
}
# Workload config fields removed since runs were stored: dropped when a stored config is
# rebuilt. bf16 was the vision workloads' own CUDA autocast; precision is RunConfig's now.
_RETIRED_WORKLOAD_FIELDS = ("bf16",)


SEED_MAX = 2**63 - 1  # SQLite's INTEGER (int64); torch's manual_seed takes up to 2**64 - 1
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: weights and lr live in it


def check_run_numbers(cfg: RunConfig) -> None:
    """Numbers the run cannot hold are refused before anything is written (issue 20, finding
    8): a seed outside int64 (the store's column), a rho or learning rate that is not finite
    in float32 (every step would overflow)."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {cfg.seed!r}")
    if cfg.rho > FLOAT32_MAX:
        raise ValueError(f"rho {cfg.rho:g} overflows float32 (max {FLOAT32_MAX:.4g})")
    lr = (cfg.workload_config or {}).get("learning_rate")
    if isinstance(lr, (int, float)) and not abs(lr) <= FLOAT32_MAX:
        raise ValueError(f"learning_rate {lr:g} is not a finite float32 (max {FLOAT32_MAX:.4g})")


@dataclass(frozen=True)
class RunConfig:
    workload: str
    """registered workload name"""
    preset: str
    """workload preset the config started from (smoke | quick | paper | ...)"""
    width: float
    """width multiplier of the workload's 1x model"""
    optimizer: str
    """'sam' or the base optimizer's name"""
    base_optimizer: str
    """the optimizer that takes the steps (SAM's base, or the optimizer itself)"""
    seed: int = 0
    """seed of initialisation, data order, dropout"""
    rho: float = 0.0
    """SAM radius (0 for base runs)"""
    adaptive: bool = False
    """ASAM: perturbation scaled elementwise by |w|"""
    m_sharpness: int = 0
    """ascent per chunk of m examples (0 = one ascent per batch)"""
    micro_batch_size: int = 0
    """gradient accumulation chunk (0 = whole batch at once)"""
    precision: str = "fp32"
    """fp32 | bf16 (autocast) | fp16 (autocast + GradScaler; inf/nan steps are skipped)"""
    sam_start: float = 0.0
    """SAM runs: fraction of the total steps from which the ascent is used (late-phase SAM)"""
    sam_end: float = 1.0
    """SAM runs: fraction of the total steps after which plain base steps are taken again"""
    protocol: str = "best-val"
    """which stored test metric the experiment reports: best-val (at the best validation
    epoch) | final (at the last epoch); both are stored with every run"""
    workload_config: dict[str, Any] = field(default_factory=dict)
    """the workload's fully resolved config"""

    def __post_init__(self) -> None:
        if not 0 <= self.rho < float("inf"):  # also refuses nan
            raise ValueError(f"rho must be a finite number >= 0, got {self.rho}")
        check_run_numbers(self)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.optimizer != "sam" and (self.rho or self.adaptive or self.m_sharpness):
            raise ValueError("rho, adaptive and m_sharpness apply to SAM runs only")
        if (self.sam_start, self.sam_end) != (0.0, 1.0):
            if self.optimizer != "sam":
                raise ValueError("sam_start and sam_end apply to SAM runs only")
            if not 0.0 <= self.sam_start < self.sam_end <= 1.0:
                raise ValueError(
                    f"need 0 <= sam_start < sam_end <= 1, got {self.sam_start}, {self.sam_end}"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """The inverse of ``to_dict`` (a stored run's ``config["run"]``); unknown keys are an
        error, so a config written by a newer version is not silently misread."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"run config has unknown keys {unknown}; expected {sorted(known)}")
        return cls(**d)

    @property
    def run_id(self) -> str:
        d = self.to_dict()
        for name, default in _HASH_OMITTED_AT_DEFAULT.items():
            if d[name] == default:  # fields added later: runs stored before them keep their ids
                del d[name]
        wl = d["workload_config"]
        omitted = _WORKLOAD_HASH_OMITTED_FOR.get(self.workload, {})
        for name, default in {**_WORKLOAD_HASH_OMITTED_AT_DEFAULT, **omitted}.items():
            if name in wl and wl[name] == default:
                del wl[name]
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def sam_active(self, step: int, total_steps: int) -> bool:
        """Whether step ``step`` (0-based) of ``total_steps`` takes SAM's ascent."""
        return self.sam_start * total_steps <= step < self.sam_end * total_steps

    def run_name(self) -> str:
        """``{workload}__{optimizer}__w{width}__s{seed}__{timestamp}`` (CleanRL's run_name)."""
        opt = f"sam{self.rho:g}" if self.optimizer == "sam" else self.optimizer
        if (self.sam_start, self.sam_end) != (0.0, 1.0):
            opt += f"[{self.sam_start:g}-{self.sam_end:g}]"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return f"{self.workload}__{opt}__w{format_width(self.width)}__s{self.seed}__{stamp}"


def workload_for_run(cfg: RunConfig) -> Any:
    """The workload exactly as the run saw it, rebuilt from the stored config alone.

    The preset gives the starting point and every stored field is applied as an override, so
    the rebuilt config equals the stored one (checked: a mismatch means the code changed the
    meaning of a field, and the run would not be reproduced)."""
    from domains import create_workload  # here, so the store/tables side never imports torch

    fields = {k: v for k, v in cfg.workload_config.items() if k not in _RETIRED_WORKLOAD_FIELDS}
    workload = create_workload(cfg.workload, cfg.preset, **fields)
    rebuilt = json.loads(json.dumps(dataclasses.asdict(workload.config), default=str))
    stored = json.loads(json.dumps(fields, default=str))
    if rebuilt != stored:
        diff = sorted(k for k in set(rebuilt) | set(stored) if rebuilt.get(k) != stored.get(k))
        raise ValueError(f"{cfg.workload}: rebuilt config differs from the stored one in {diff}")
    return workload
