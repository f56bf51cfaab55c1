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

__all__ = [
    "RunConfig",
    "OPTIMIZER_CHOICES",
    "PRECISIONS",
    "PROTOCOLS",
    "option",
    "run_options",
    "workload_for_run",
]

OPTIMIZER_CHOICES = ("base", "sam", "both", "sgd", "adam", "adamw")
PRECISIONS = ("fp32", "bf16", "fp16")
# Which stored test metric an experiment reports (every run stores both; runners/engine/train.py):
# at the best validation epoch (the paper's Fig. 1, with validation replacing its test-set
# selection) or at the final epoch (label noise, PoS without early stopping: PAPERS.md).
PROTOCOLS = ("best-val", "final")
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
    "synthetic-regression": {"train_eval_size": 0},  # issue 21: 0 = the whole training set
}
# Workload config fields removed since runs were stored: dropped when a stored config is
# rebuilt. bf16 was the vision workloads' own CUDA autocast; precision is RunConfig's now.
_RETIRED_WORKLOAD_FIELDS = ("bf16",)


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    sam_only: bool = False,
    grid: bool = False,
    hash_omit_at_default: bool = False,
) -> Any:
    """A run-level option of ``RunConfig``, declared once: the CLI flag (``--name-with-dashes``
    in runners/run.py, typed by the default, ``help`` as its help), the sweep key (under an
    entry's ``flags:``), the grid expansion (runners/engine/plan.py) and the run id all follow.

    choices: the allowed values (the flag's choices; the sweep spec checks them too).
    sam_only: SAM runs only; a base run of the same grid gets the default.
    grid: a comma list on the CLI (a list in a sweep) gives one SAM run per value.
    hash_omit_at_default: an option added after runs were stored: left out of the run id at
        its default, so those runs keep their ids (a new option should set this).
    """
    meta = {
        "help": help,
        "choices": choices,
        "sam_only": sam_only,
        "grid": grid,
        "hash_omit_at_default": hash_omit_at_default,
    }
    return field(default=default, metadata={"run_option": meta})


def run_options(cls: type | None = None) -> list[dataclasses.Field]:
    """The run-level options of ``cls`` (RunConfig), in declaration order; each field's
    ``metadata["run_option"]`` is what ``option`` declared."""
    return [f for f in dataclasses.fields(cls or RunConfig) if "run_option" in f.metadata]


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
    # Run-level options: each declared once, with its help text and hashing rule (``option``).
    adaptive: bool = option(False, "adaptive SAM (ASAM): perturbation scaled by |w|", sam_only=True)
    m_sharpness: int = option(
        0, "SAM ascent per chunk of m examples (0 = one ascent per batch)", sam_only=True
    )
    micro_batch_size: int = option(
        0, "accumulate gradients over chunks of this size (0 = the whole batch at once)"
    )
    precision: str = option(
        "fp32",
        "fp32 (default), bf16 autocast, or fp16 autocast with a GradScaler (inf/nan steps "
        "are skipped)",
        choices=PRECISIONS,
    )
    sam_start: float = option(
        0.0,
        "late-phase SAM: fraction of training from which SAM ascends, or a comma list (one "
        "SAM run per value), e.g. 0,0.5,0.875 (default 0: SAM throughout)",
        sam_only=True,
        grid=True,
        hash_omit_at_default=True,
    )
    sam_end: float = option(
        1.0,
        "late-phase SAM: fraction of training after which SAM stops (default 1)",
        sam_only=True,
        hash_omit_at_default=True,
    )
    protocol: str = option(
        "best-val",
        "which test metric the experiment reports: at the best validation epoch (best-val, "
        "default) or at the final epoch (final); every run stores both",
        choices=PROTOCOLS,
        hash_omit_at_default=True,
    )
    workload_config: dict[str, Any] = field(default_factory=dict)
    """the workload's fully resolved config"""

    def __post_init__(self) -> None:
        if not 0 <= self.rho < float("inf"):  # also refuses nan
            raise ValueError(f"rho must be a finite number >= 0, got {self.rho}")
        check_run_numbers(self)
        for f in run_options(type(self)):
            choices = f.metadata["run_option"]["choices"]
            if choices is not None and getattr(self, f.name) not in choices:
                raise ValueError(
                    f"{f.name} must be one of {choices}, got {getattr(self, f.name)!r}"
                )
        if self.m_sharpness < 0 or self.micro_batch_size < 0:
            raise ValueError("m_sharpness and micro_batch_size must be >= 0")
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
        # the fields as to_dict() has them, copied shallowly (asdict's deep copy was 3/4 of
        # the time of expanding a sweep): the workload config holds plain values only
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["workload_config"] = dict(self.workload_config)
        for f in run_options(type(self)):
            # options added later, at their default: runs stored before them keep their ids
            if f.metadata["run_option"]["hash_omit_at_default"] and d[f.name] == f.default:
                del d[f.name]
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


def preset_changes(cfg: RunConfig) -> list[str] | None:
    """The workload-config fields whose stored value differs from the run's preset: stored with
    the run (outside its id), so the report attaches the paper's numbers only to runs of the
    paper's exact recipe (a ``paper`` preset run with ``--num_epochs=20`` is not the paper's
    100-epoch experiment). None for a workload the registry does not know (one trained by the
    user's own code through the engine): there is no preset to compare with."""
    from domains import UnknownWorkloadError, create_workload  # here: tables never import torch

    try:
        preset_config = create_workload(cfg.workload, cfg.preset).config
    except UnknownWorkloadError:
        return None
    preset = json.loads(json.dumps(dataclasses.asdict(preset_config), default=str))
    stored = json.loads(json.dumps(cfg.workload_config, default=str))
    return sorted(k for k in set(preset) | set(stored) if preset.get(k) != stored.get(k))
