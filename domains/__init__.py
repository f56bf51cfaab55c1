"""Workloads by domain. Use ``create_workload`` / ``list_workloads``; never import a workload
module directly. Adding a domain = adding one sub-package that calls ``register``."""

from domains.registry import (
    UnknownWorkloadError,
    WorkloadSpec,
    add_domains_path,
    create_workload,
    default_workload,
    domain_names,
    get_spec,
    list_workloads,
    register,
)
from domains.workload import (
    ConfigError,
    FitRequest,
    MissingDataError,
    SizedByData,
    Target,
    TrainConfig,
    Workload,
    build_config,
    resolve_data_root,
)

__all__ = [
    "UnknownWorkloadError",
    "add_domains_path",
    "WorkloadSpec",
    "create_workload",
    "default_workload",
    "domain_names",
    "get_spec",
    "list_workloads",
    "register",
    "ConfigError",
    "FitRequest",
    "MissingDataError",
    "SizedByData",
    "Target",
    "TrainConfig",
    "Workload",
    "build_config",
    "resolve_data_root",
]
