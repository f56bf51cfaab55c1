"""The workload registry: ``register``, ``create_workload``, ``list_workloads``.

Each sub-package of ``domains/`` is one domain; importing it registers its workloads. Domain
packages are imported on first use, and must import their heavy optional libraries
(torchvision, transformers, torch_geometric, stable_baselines3) inside functions, so that a
missing extra only matters when one of its workloads is built.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domains.workload import ConfigError, Workload

__all__ = [
    "WorkloadSpec",
    "UnknownWorkloadError",
    "register",
    "create_workload",
    "list_workloads",
    "get_spec",
    "domain_names",
    "default_workload",
]


class UnknownWorkloadError(KeyError):
    """Unknown workload or domain name."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    domain: str
    entrypoint: Callable[..., Workload]
    presets: tuple[str, ...]
    default: bool  # the workload ``--domain D`` runs when no ``--workload`` is given
    description: str


_REGISTRY: dict[str, WorkloadSpec] = {}
_IMPORTED: set[str] = set()


def register(
    name: str,
    *,
    domain: str,
    presets: tuple[str, ...] = ("smoke", "quick", "paper"),
    default: bool = False,
) -> Callable[[Callable[..., Workload]], Callable[..., Workload]]:
    """Decorator for an entrypoint ``f(preset="quick", **overrides) -> Workload``."""

    def wrap(entrypoint: Callable[..., Workload]) -> Callable[..., Workload]:
        if name in _REGISTRY:
            raise ValueError(f"workload {name!r} is already registered")
        doc = (entrypoint.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = WorkloadSpec(
            name, domain, entrypoint, tuple(presets), default, doc[0] if doc else ""
        )
        return entrypoint

    return wrap


def domain_names() -> list[str]:
    """Every domain package under ``domains/`` (imported or not)."""
    import domains

    return sorted(m.name for m in pkgutil.iter_modules(domains.__path__) if m.ispkg)


def _import_domain(domain: str) -> None:
    if domain in _IMPORTED:
        return
    importlib.import_module(f"domains.{domain}")
    _IMPORTED.add(domain)


def _import_all() -> None:
    for d in domain_names():
        _import_domain(d)


def get_spec(name: str) -> WorkloadSpec:
    _import_all()
    if name not in _REGISTRY:
        raise UnknownWorkloadError(
            f"unknown workload {name!r}; known workloads: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def list_workloads(pattern: str = "*", domain: str | None = None) -> list[str]:
    """Registered workload names matching a glob ``pattern`` (and ``domain``), sorted."""
    _import_all()
    if domain is not None and domain not in domain_names():
        raise UnknownWorkloadError(
            f"unknown domain {domain!r}; known domains: {', '.join(domain_names())}"
        )
    return sorted(
        n
        for n, s in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern) and (domain is None or s.domain == domain)
    )


def default_workload(domain: str) -> str:
    """The workload ``--domain D`` runs without ``--workload``."""
    names = list_workloads(domain=domain)
    if not names:
        raise UnknownWorkloadError(f"domain {domain!r} has no workloads registered yet")
    defaults = [n for n in names if _REGISTRY[n].default]
    return defaults[0] if defaults else names[0]


def create_workload(name: str, preset: str = "quick", **overrides: Any) -> Workload:
    """Build workload ``name`` with a preset and config overrides (checked and typed)."""
    spec = get_spec(name)
    if preset not in spec.presets:
        raise ConfigError(f"unknown preset {preset!r} for {name}; expected one of {spec.presets}")
    workload = spec.entrypoint(preset=preset, **overrides)
    workload.name, workload.domain = spec.name, spec.domain
    return workload
