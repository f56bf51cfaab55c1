"""The one small interface every workload implements, and its shared config fields.

A workload defines the problem (model at a width, data, loss, evaluation, metric) and its
training recipe; it never knows whether SAM is used. The runner owns the loop.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "Target",
    "TrainConfig",
    "Workload",
    "FitRequest",
    "ConfigError",
    "SizedByData",
    "MissingDataError",
    "build_config",
    "parse_field_value",
    "resolve_data_root",
]


LR_SCHEDULES = ("constant", "step", "cosine", "linear", "inverse_sqrt")  # samcore.LRSchedule


class ConfigError(ValueError):
    """An unknown config key, or a value of the wrong type."""


class SizedByData(ConfigError):
    """``build_model`` before ``setup_data`` for a config whose model size comes from the data
    (e.g. a vocabulary size of 0): the width was valid, the parameter count is not known yet."""


class MissingDataError(FileNotFoundError):
    """A data set is not where it was looked for; the message says how to get it."""

    def __init__(self, dataset: str, looked_in: str | Path, how_to_get: str) -> None:
        super().__init__(f"{dataset} not found in {looked_in}: {how_to_get}")


def resolve_data_root(data_root: str | Path | None) -> Path:
    """``--data-root``, else ``$SAM_DATA``, else the user cache (~/.cache/sam-overparam), as an
    absolute path: a relative one is read against the directory the user started in, so that
    workers and subprocesses that run elsewhere see the same folder."""
    if data_root:
        path = Path(data_root)
    elif os.environ.get("SAM_DATA"):
        path = Path(os.environ["SAM_DATA"])
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "sam-overparam"
    return Path(os.path.abspath(path.expanduser()))  # abspath: no symlink resolution


@dataclass(frozen=True)
class Target:
    """The metric that selects models and rho: evaluated as ``val/<name>``, reported as
    ``test/<name>`` at the best validation point. ``unit`` and ``scale`` say how to read it
    (stored with each run's summary as ``target_unit``; the report's table headers use it)."""

    name: str
    mode: Literal["min", "max"]
    unit: str = ""  # what the number is: "accuracy", "MSE", "return" ('' = not declared)
    scale: Literal["percent", "fraction", ""] = ""  # 0..100, 0..1, or neither (MSE, return)

    @property
    def label(self) -> str:
        """The unit as table headers show it: 'accuracy, %', 'AP, 0..1', 'MSE'."""
        suffix = {"percent": ", %", "fraction": ", 0..1", "": ""}[self.scale]
        return f"{self.unit}{suffix}" if self.unit else ""

    def better(self, a: float, b: float) -> bool:
        """True if ``a`` is strictly better than ``b``."""
        return a < b if self.mode == "min" else a > b

    def gain(self, base: float, sam: float) -> float:
        """SAM's improvement over the base optimizer, positive when SAM is better."""
        return base - sam if self.mode == "min" else sam - base


@dataclass(frozen=True)
class TrainConfig:
    """Recipe fields every supervised workload has; a workload's config subclasses this."""

    optimizer: str = "sgd"
    """base optimizer: sgd | adam | adamw"""
    learning_rate: float = 0.1
    """peak learning rate"""
    momentum: float = 0.0
    """SGD momentum"""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam/AdamW betas"""
    adam_eps: float = 1e-8
    """Adam/AdamW epsilon"""
    weight_decay: float = 0.0
    """L2 / decoupled weight decay, applied by the base optimizer"""
    decay_norm_and_bias: bool = True
    """apply weight decay to biases and normalisation parameters too (the paper's code does)"""
    lr_schedule: str = "constant"
    """constant | step | cosine | linear | inverse_sqrt"""
    lr_milestones: tuple[float, ...] = ()
    """fractions of training at which a step schedule multiplies the LR by lr_gamma"""
    lr_gamma: float = 0.1
    """step schedule factor"""
    warmup_steps: int = 0
    """linear warm-up steps"""
    batch_size: int = 128
    """examples per optimizer step"""
    num_epochs: int = 1
    """passes over the training set"""
    eval_every: int = 1
    """evaluate (and checkpoint) every this many epochs"""
    rho: float = 0.05
    """default SAM radius when the run does not give one"""
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    """the paper's rho grid for this workload (rho selection on validation); a workload whose
    grid depends on the width extends it in ``Workload.rho_grid_at``"""

    def __post_init__(self) -> None:
        """Values of the right type but out of range fail here, as bad input (ConfigError),
        not later inside the training loop. Subclasses with their own checks call this."""
        for key in ("learning_rate", "momentum", "weight_decay", "adam_eps", "rho"):
            value = getattr(self, key)
            if not 0 <= value < math.inf:
                raise ConfigError(f"{key} must be a finite number >= 0, got {value}")
        for key in ("batch_size", "num_epochs", "eval_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 < self.lr_gamma < math.inf:
            raise ConfigError(f"lr_gamma must be a finite number > 0, got {self.lr_gamma}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be in [0, 1), got {self.betas}")
        if not all(0 <= m <= 1 for m in self.lr_milestones):
            raise ConfigError(
                f"lr_milestones are fractions of training in [0, 1], got {self.lr_milestones}"
            )
        if not all(0 <= r < math.inf for r in self.rho_grid):
            raise ConfigError(f"rho_grid values must be finite and >= 0, got {self.rho_grid}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )


@dataclass(frozen=True)
class FitRequest:
    """What a workload that owns its training loop (``Workload.fit``) is asked to do."""

    width: float
    seed: int
    sam: bool
    """train with SAM around ``base_optimizer``"""
    base_optimizer: str
    rho: float
    adaptive: bool
    device: torch.device
    log: Callable[[int, dict[str, float]], None]
    """``log(step, metrics)``: one row of metrics into the store (and a line if verbose)"""
    checkpoint_dir: Path
    """a folder of this run's own for the loop's checkpoints"""
    progress: bool = True


class Workload:
    """Subclasses set ``target`` and ``widths`` and implement the methods below.

    ``name`` and ``domain`` are filled in by the registry. Supervised workloads implement the
    data / loss / evaluate methods and the runner owns the loop. A workload whose library owns
    the loop (stable-baselines3's PPO) sets ``owns_loop = True`` and implements ``fit``.
    """

    name: str = ""
    domain: str = ""
    target: Target
    widths: tuple[float, ...] = (1.0,)  # the paper's width grid as multipliers of "1x"
    owns_loop: bool = False
    # True: several seeds may train as one vmapped model (runners/engine/train_ensemble.py); only
    # for models without batch norm or dropout whose loss works per example under vmap.
    supports_seed_ensemble: bool = False
    # The data's identity (``data_identity``): the files ``setup_data`` read (set there, inside
    # ``data_check.reading()``), or, for data drawn by a generator, the config fields it reads.
    data_files: tuple[Path, ...] = ()
    generator_params: tuple[str, ...] | None = None

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    # ---- model
    def build_model(self, width: float) -> nn.Module:
        raise NotImplementedError

    # ---- data
    def setup_data(self, data_root: Path, device: torch.device) -> None:
        """Load or generate the data once (train / val / test). May raise MissingDataError."""
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        """One epoch of training batches, shuffled by ``generator``, on the data's device."""
        raise NotImplementedError

    def data_identity(self) -> dict[str, Any]:
        """What this workload's data is, stored with each run beside its config (not part of
        the run id): ``{"files": {path: {size, sha256}}}`` for data read from files, or
        ``{"generated": "<module>.<Class>", "params": {field: value}}`` for data a generator
        draws; ``{}`` when neither is known (RL environments, folders of images)."""
        if self.data_files:
            from domains.data_check import fingerprint  # data_check imports this module

            return {"files": fingerprint(self.data_files)}
        if self.generator_params is not None:
            params = {k: getattr(self.config, k) for k in self.generator_params}
            return {"generated": f"{type(self).__module__}.{type(self).__name__}", "params": params}
        return {}

    # ---- objective
    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean training loss of the batch and detached extra metrics. Pure."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, splits: Collection[str] | None = None) -> dict[str, float]:
        """Flat split-prefixed metrics: ``train/loss``, ``val/<target>``, ``test/<target>``.

        ``splits``: the ones wanted (None: all). The loop asks for ``("train", "val")`` every
        evaluation and for ``("test",)`` only where validation improved and at the last epoch,
        the only test numbers it reports. A workload may return more than asked where its
        splits share the work (one full-batch forward pass), and may leave the parameter out
        (then every evaluation measures every split)."""
        raise NotImplementedError

    # ---- rho grid
    def rho_grid_at(self, width: float) -> tuple[float, ...]:
        """The paper's rho grid at ``width`` (the sweep's ``rho: paper``): ``config.rho_grid``
        unless the paper adds values at some widths (ImageNet)."""
        return tuple(self.config.rho_grid)

    # ---- workloads that own their loop
    def fit(self, request: FitRequest) -> dict[str, float]:
        """Train one run; return ``val/<target>`` (the selection metric) and ``test/<target>``
        at the selected point, and ``final_val/<target>``, ``final_test/<target>`` at the last
        evaluation (a loop without selection returns the same values under both names).
        Optional: ``best_step`` and ``final_step`` (the loop's own step count at each)."""
        raise NotImplementedError


# ---------------------------------------------------------------------- config parsing
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def parse_field_value(cls: type, key: str, value: Any) -> Any:
    """Coerce ``value`` (often a CLI string) to the declared type of field ``key``."""
    types_ = _field_types(cls)
    if key not in types_:
        raise ConfigError(
            f"unknown config key {key!r} for {cls.__name__}; valid keys: {', '.join(sorted(types_))}"
        )
    return _coerce(types_[key], value, key)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        items = value
        if isinstance(value, str):
            items = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key} expects a comma-separated list, got {value!r}")
        elem = args[0] if args else str
        if len(args) == 2 and args[1] is Ellipsis or len(args) <= 1:
            return tuple(_coerce(elem, v, key) for v in items)
        if len(items) != len(args):
            raise ConfigError(f"{key} expects {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, key) for a, v in zip(args, items))
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key} expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key} expects an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects a number, got {value!r}")
        try:
            return float(value)  # int -> float accepted
        except (TypeError, ValueError):
            raise ConfigError(f"{key} expects a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} expects a string, got {value!r}")
        return value
    return value


def build_config(
    cls: type, presets: dict[str, dict[str, Any]], preset: str, **overrides: Any
) -> Any:
    """Defaults, then the named preset, then overrides; every key checked and typed."""
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r}; expected one of {sorted(presets)}")
    values = {k: parse_field_value(cls, k, v) for k, v in presets[preset].items()}
    values.update({k: parse_field_value(cls, k, v) for k, v in overrides.items()})
    return dataclasses.replace(cls(), **values)
