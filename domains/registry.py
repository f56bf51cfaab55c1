"""The workload registry: ``register``, ``create_workload``, ``list_workloads``.

Each sub-package of ``domains/`` is one domain; importing it registers its workloads. Domain
packages are imported on first use, and must import their heavy optional libraries
(torchvision, transformers, torch_geometric, stable_baselines3) inside functions, so that a
missing extra only matters when one of its workloads is built.

Domains from outside the repository register the same way, found in two places:
- an installed distribution's entry point in the group ``sam_overparam.domains``, named after
  the domain, whose value is the module that registers its workloads::

      [project.entry-points."sam_overparam.domains"]
      tabular = "my_tabular_domain"

- a folder on ``$SAM_DOMAINS_PATH`` (``os.pathsep``-separated; the commands' ``--domains-path``
  sets it, so sweep workers see it too): each package or module in it is a domain of its name.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import importlib.metadata
import os
import pkgutil
import sys
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
    "add_domains_path",
    "ENTRY_POINT_GROUP",
    "DOMAINS_PATH_ENV",
]

ENTRY_POINT_GROUP = "sam_overparam.domains"
DOMAINS_PATH_ENV = "SAM_DOMAINS_PATH"


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


@functools.cache
def _builtin_domains() -> tuple[str, ...]:
    import domains

    return tuple(sorted(m.name for m in pkgutil.iter_modules(domains.__path__) if m.ispkg))


def _external_domains() -> dict[str, Callable[[], object]]:
    """Domain name -> the import that registers its workloads, for domains from outside the
    repository (entry points, then ``$SAM_DOMAINS_PATH`` folders)."""
    return _external_domains_in(os.environ.get(DOMAINS_PATH_ENV, ""))


@functools.cache  # entry points are read once per process (per domains path)
def _external_domains_in(domains_path: str) -> dict[str, Callable[[], object]]:
    found: dict[str, Callable[[], object]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load
    for folder in filter(None, domains_path.split(os.pathsep)):
        for module in pkgutil.iter_modules([folder]):
            found[module.name] = lambda f=folder, n=module.name: _import_from(f, n)
    clash = sorted(set(found) & set(_builtin_domains()))
    if clash:
        raise ValueError(f"external domain {clash[0]!r} has the name of a built-in domain")
    return found


def _import_from(folder: str, name: str) -> object:
    if folder not in sys.path:
        sys.path.append(folder)  # after the installed packages: never shadows one
    return importlib.import_module(name)


def add_domains_path(folder: str | os.PathLike[str]) -> None:
    """Register the domains in ``folder`` (each package or module in it is one), for this
    process and the processes it starts (``$SAM_DOMAINS_PATH``)."""
    path = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(path):
        raise ValueError(f"--domains-path {folder}: not a folder")
    current = os.environ.get(DOMAINS_PATH_ENV, "")
    if path not in current.split(os.pathsep):
        os.environ[DOMAINS_PATH_ENV] = os.pathsep.join(filter(None, [current, path]))


def domain_names() -> list[str]:
    """Every domain: the packages under ``domains/`` and those from outside (imported or not)."""
    return sorted({*_builtin_domains(), *_external_domains()})


def _import_domain(domain: str) -> None:
    if domain in _IMPORTED:
        return
    if domain in _builtin_domains():
        importlib.import_module(f"domains.{domain}")
    else:
        _external_domains()[domain]()
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
