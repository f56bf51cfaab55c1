"""Sweep specs: a YAML file that names workloads x widths x optimizers x rhos x seeds x flags.

    name: quick                  # printed with the plan
    description: ...             # optional, free text
    preset: quick                # defaults for every entry: preset, seeds, optimizers, rho
    seeds: [0, 1, 2]
    optimizers: [base, sam]      # base (the workload's own optimizer) | sam | sgd | adam | adamw
    rho: default                 # default (the config's rho) | paper (its grid per width) | 0.05 | [..]
    protocol: best-val           # which test metric the experiment reports: best-val | final
    entries:
      - workload: mnist-mlp      # a registered name (python runners/run.py --list)
        widths: [0.25x, 1x, 4x]  # or "all": the workload's paper grid
        preset: smoke            # optional; any top-level default can be given per entry
        overrides: {num_epochs: 3}         # workload config fields, as run.py's --key=value
        grid: {label_noise: [0.0, 0.2]}    # workload config fields, one set of runs per value
        flags: {precision: fp32, adaptive: false, sam_start: [0, 0.5]}  # run.py's run options

The file only declares; every key and value is checked before anything runs (a typo'd key is
an error that names it, where it is, and the valid keys), and each entry is expanded by
``runners.engine.plan.iter_grid``, the generator behind ``expand_grid`` that ``runners/run.py`` uses, so the same experiment
gets the same run id whichever command asked for it. ``rho_grid`` (the sweep CLI's
``--rho-grid``) replaces every entry's ``rho``. SAM's rho is chosen per width on validation by
the report (``results/tables.py``), never here. ``rho: paper`` takes the workload's paper grid
at each width (``Workload.rho_grid_at``: ImageNet adds 0.005 at its two smallest widths).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from domains import ConfigError, UnknownWorkloadError, create_workload, get_spec
from runners.engine.config import PROTOCOLS, RunConfig, run_options
from runners.engine.plan import PlanError, iter_grid
from samcore import WidthError, parse_width, parse_widths

__all__ = ["SpecError", "Sweep", "SweepPlan", "load_sweep", "open_sweep", "parse_rho"]

DEFAULT_KEYS = ("preset", "seeds", "optimizers", "rho", "protocol")
TOP_KEYS = ("name", "description", *DEFAULT_KEYS, "entries")
ENTRY_KEYS = ("workload", "widths", *DEFAULT_KEYS, "overrides", "grid", "flags")


def _flag_fields() -> dict[str, Any]:
    """An entry's flags: RunConfig's run-level options (runners.engine.config.option) but those that
    are top-level defaults (protocol)."""
    return {f.name: f for f in run_options() if f.name not in DEFAULT_KEYS}


OPTIMIZERS = ("base", "sam", "sgd", "adam", "adamw")


class SpecError(ValueError):
    """A sweep spec that cannot be run: the message says where and what is expected."""


@dataclass(frozen=True)
class Sweep:
    name: str
    configs: list[RunConfig]
    """every run of the sweep, in spec order, each config once"""


def _check_keys(d: Any, valid: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected a mapping of {', '.join(valid)}, got {d!r}")
    for key in d:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SpecError(f"{where}: unknown key {key!r}{hint} (valid keys: {', '.join(valid)})")
    return d


def parse_rho(value: Any, where: str) -> str | list[float]:
    """``paper`` | ``default`` | a number | a list of numbers | ``"0.01,0.05"`` (CLI form)."""
    if value in ("paper", "default"):
        return value
    items = value.split(",") if isinstance(value, str) else value
    items = items if isinstance(items, list) else [items]
    try:
        rhos = [float(v) for v in items if not isinstance(v, bool)]
    except (TypeError, ValueError):
        rhos = []
    if not items or len(rhos) != len(items) or any(not (0 <= r < float("inf")) for r in rhos):
        raise SpecError(f"{where}: rho must be 'paper', 'default', or numbers >= 0, got {value!r}")
    return rhos


def _seeds(value: Any, where: str) -> list[int]:
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
        and len(set(value)) == len(value)
    )
    if not ok:
        raise SpecError(f"{where}: seeds must be a list of distinct integers >= 0, got {value!r}")
    return value


def _optimizers(value: Any, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    bad = [o for o in items if o not in OPTIMIZERS]
    if not items or bad:
        raise SpecError(
            f"{where}: unknown optimizer {bad[0] if bad else value!r}; "
            f"expected a list of {', '.join(OPTIMIZERS)}"
        )
    return items


def _widths(value: Any, grid: tuple[float, ...], where: str) -> list[float]:
    try:
        if isinstance(value, str):
            return parse_widths(value, grid)
        if isinstance(value, list) and value:
            return [parse_width(v) for v in value]
        raise WidthError(f"widths must be a list like [1x, 4x] or 'all', got {value!r}")
    except WidthError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _flag_value(f: Any, value: Any, where: str) -> None:
    """Refuse a flag value of another type than its option's default, or not a choice."""
    meta, kind = f.metadata["run_option"], type(f.default)
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            raise SpecError(f"{where}: {f.name} must be one of {meta['choices']}, got {value!r}")
    elif kind is bool and not isinstance(value, bool):
        raise SpecError(f"{where}: {f.name} must be true or false")
    elif kind is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise SpecError(f"{where}: {f.name} must be an integer >= 0, got {value!r}")
    elif kind is float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise SpecError(f"{where}: {f.name} must be a number, got {value!r}")


def _flags(value: Any, where: str) -> dict[str, Any]:
    """An entry's flags by option name; a grid option may be a list (one run per value)."""
    fields = _flag_fields()
    flags = _check_keys(value, tuple(fields), where)
    for name, v in flags.items():
        grid = fields[name].metadata["run_option"]["grid"]
        for item in v if grid and isinstance(v, list) else [v]:
            _flag_value(fields[name], item, where)
        if grid:
            flags[name] = v if isinstance(v, list) else [v]
    return flags


def _config_keys(workload_name: str, preset: str, keys: list[str], where: str) -> None:
    """Unknown workload config keys, with a suggestion (create_workload would say it too,
    without the close match)."""
    valid = [f.name for f in dataclasses.fields(create_workload(workload_name, preset).config)]
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SpecError(
                f"{where}: unknown config key {key!r} for {workload_name}{hint} "
                f"(python runners/run.py --workload {workload_name} --list-config shows them)"
            )


def _rho_groups(
    workload: Any, widths: list[float], rho: str | list[float]
) -> list[tuple[list[float], list[float]]]:
    """(rhos, widths) pairs in width order: consecutive widths that share a rho grid are one
    group, so the plan's order (width, optimizer, rho, seed) is that of one expand_grid."""
    groups: list[tuple[list[float], list[float]]] = []
    for w in widths:
        if rho == "paper":
            rhos = list(workload.rho_grid_at(w))
        else:
            rhos = [workload.config.rho] if rho == "default" else list(rho)
        if groups and groups[-1][0] == rhos:
            groups[-1][1].append(w)
        else:
            groups.append((rhos, [w]))
    return groups


@dataclass(frozen=True)
class _Entry:
    """One spec entry, its keys checked: what its grid points expand."""

    name: str
    preset: str
    widths: Any
    seeds: list[int]
    optimizers: list[str]
    rho: str | list[float]
    protocol: str
    overrides: dict[str, Any]
    grid: dict[str, list[Any]]
    flags: dict[str, Any]
    where: str


def _check_entry(
    entry: dict[str, Any], defaults: dict[str, Any], rho_grid: str | None, where: str
) -> _Entry:
    if "workload" not in entry:
        raise SpecError(f"{where}: missing key 'workload'")
    name = entry["workload"]
    where = f"{where} ({name})"
    try:
        get_spec(name)
    except UnknownWorkloadError as exc:
        raise SpecError(f"{where}: {exc}") from None
    merged = {**defaults, **{k: entry[k] for k in DEFAULT_KEYS if k in entry}}
    for key in ("preset", "seeds", "optimizers"):
        if key not in merged:
            raise SpecError(f"{where}: no {key!r}, here or at the top level")
    preset = merged["preset"]
    if preset not in get_spec(name).presets:
        raise SpecError(
            f"{where}: unknown preset {preset!r}; expected one of {get_spec(name).presets}"
        )
    seeds = _seeds(merged["seeds"], where)
    optimizers = _optimizers(merged["optimizers"], where)
    rho = parse_rho(rho_grid if rho_grid is not None else merged.get("rho", "default"), where)
    protocol = merged.get("protocol", "best-val")
    if protocol not in PROTOCOLS:
        raise SpecError(
            f"{where}: protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )
    overrides = entry.get("overrides") or {}
    grid = entry.get("grid") or {}
    for key, d in (("overrides", overrides), ("grid", grid)):
        if not isinstance(d, dict):
            raise SpecError(f"{where}: {key} must be a mapping of config field: value")
    both = sorted(set(overrides) & set(grid))
    if both:
        raise SpecError(f"{where}: {both} given both in overrides and in grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where}: grid {key!r} must be a non-empty list of values")
    _config_keys(name, preset, [str(k) for k in (*overrides, *grid)], where)
    flags = _flags(entry.get("flags") or {}, f"{where}: flags")
    if "widths" not in entry:
        raise SpecError(f"{where}: missing key 'widths' (a list like [1x, 4x], or 'all')")
    return _Entry(
        name, preset, entry["widths"], seeds, optimizers, rho, protocol, overrides, grid, flags,
        where,
    )  # fmt: skip


def _entry_grids(e: _Entry, seeds: list[int]) -> Iterator[Iterator[RunConfig]]:
    """Per grid point and rho group of the entry, the lazily expanded runs with ``seeds``
    (a workload is built per grid point: the point may change its widths or rho grid)."""
    for values in itertools.product(*e.grid.values()):
        point = {**e.overrides, **dict(zip(e.grid, values))}
        try:
            workload = create_workload(e.name, e.preset, **point)
            widths = _widths(e.widths, workload.widths, e.where)
            # one grid per width: the paper's rho grid can depend on the width (ImageNet)
            for rhos, ws in _rho_groups(workload, widths, e.rho):
                kw = {"protocol": e.protocol, **e.flags}
                runs = iter_grid(
                    workload, e.preset, widths=ws, optimizers=e.optimizers, rhos=rhos,
                    seeds=seeds, **kw,
                )  # fmt: skip
                yield _located(runs, e, point)
        except SpecError:  # already says where (e.g. a width error from _widths)
            raise
        except (ConfigError, PlanError, ValueError) as exc:
            raise _at(exc, e, point) from None


def _at(exc: Exception, e: _Entry, point: dict[str, Any]) -> SpecError:
    at = f" at {point}" if e.grid else ""
    return SpecError(f"{e.where}{at}: {exc}")


def _located(runs: Iterator[RunConfig], e: _Entry, point: dict[str, Any]) -> Iterator[RunConfig]:
    """``runs``, with an error raised while expanding them said as the spec's."""
    try:
        yield from runs
    except (ConfigError, PlanError, ValueError) as exc:
        raise _at(exc, e, point) from None


def _entry_count(e: _Entry) -> int:
    """How many runs the entry expands to, by multiplication: each grid point and rho group
    expanded with one seed (which checks every run but the seed), times the seeds. The
    largest seed is the one expanded: the others are >= 0 and smaller, so valid too."""
    one_seed = [max(e.seeds)]
    return sum(len(list(runs)) for runs in _entry_grids(e, one_seed)) * len(e.seeds)


# A spec is a page of YAML (sweeps/paper.yaml is ~10 kB). The caps refuse what is not one
# before it costs memory: /dev/zero, a huge file, or an alias bomb (a few lines whose aliases
# expand to billions of values; issue 20, finding 10).
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_VALUES = 100_000  # scalars, lists and mappings, with every alias use expanded
MAX_MESSAGE_CHARS = 400  # an error line quotes values: never more than this of them


def _expanded_size(data: Any, limit: int) -> int:
    """How many values ``data`` has with aliases expanded, counting up to ``limit`` + 1 only
    (a self-referencing alias never ends, a bomb would take hours)."""
    count, stack = 0, [data]
    while stack and count <= limit:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def _read_spec(path: Path) -> Any:
    """The YAML document of ``path``: a regular file of at most MAX_SPEC_BYTES of UTF-8,
    expanding to at most MAX_SPEC_VALUES values. SpecError otherwise."""
    try:
        if not path.is_file():  # a folder, /dev/zero, a pipe: never read to the end
            kind = "a folder" if path.is_dir() else "not a regular file"
            if not path.exists():
                raise FileNotFoundError(2, "No such file or directory")
            raise SpecError(f"sweep spec {path} is {kind}; expected a YAML file")
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                f"sweep spec {path} is {size:,} bytes; a spec is at most {MAX_SPEC_BYTES:,}"
            )
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # the file may grow after stat
    except OSError as exc:
        raise SpecError(f"cannot read sweep spec {path}: {exc.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"sweep spec {path} is over {MAX_SPEC_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
            "save the spec as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())[:MAX_MESSAGE_CHARS]
        raise SpecError(f"{path}: not valid YAML: {message}") from None
    except RecursionError:
        raise SpecError(f"{path}: YAML nested too deeply") from None
    if _expanded_size(data, MAX_SPEC_VALUES) > MAX_SPEC_VALUES:
        raise SpecError(
            f"{path}: expands to more than {MAX_SPEC_VALUES:,} values (YAML aliases that "
            "repeat aliases?); a spec lists its grid, it does not generate it"
        )
    return data


class SweepPlan:
    """A checked spec, expanded lazily: ``count()`` by multiplication, ``iter(plan)`` run by
    run (memory bounded by the runs taken, not the grid). ``load_sweep`` lists it all."""

    def __init__(self, path: Path, name: str, entries: list[_Entry]) -> None:
        self.path, self.name, self._entries = path, name, entries

    def count(self) -> int:
        """Runs in the grid, without listing them: each grid point's runs for one seed,
        times the seeds. Checks every grid point (an error is raised here, before any run is
        listed). An upper bound where two entries name the same run (counted twice)."""
        with _short_errors():
            return sum(_entry_count(e) for e in self._entries)

    def __iter__(self) -> Iterator[RunConfig]:
        """Every run in spec order, each once (an experiment two entries name runs once)."""
        seen: set[str] = set()
        with _short_errors():
            for e in self._entries:
                for runs in _entry_grids(e, e.seeds):
                    for cfg in runs:
                        if cfg.run_id not in seen:
                            seen.add(cfg.run_id)
                            yield cfg


@contextmanager
def _short_errors() -> Iterator[None]:
    """Messages quote the spec's values: keep each error one short line."""
    try:
        yield
    except SpecError as exc:
        message = " ".join(str(exc).split())
        if len(message) > MAX_MESSAGE_CHARS:
            message = f"{message[:MAX_MESSAGE_CHARS]}... ({len(message):,} characters)"
        raise SpecError(message) from None


def open_sweep(path: str | Path, rho_grid: str | None = None) -> SweepPlan:
    """Read and check a spec's keys and values (each grid point is checked as it is counted
    or expanded); ``rho_grid`` ('paper', 'default', '0.01,0.05') replaces every entry's rho.
    Raises SpecError (one line) on anything wrong."""
    path = Path(path)
    data = _read_spec(path)
    with _short_errors():
        where = path.name
        _check_keys(data, TOP_KEYS, where)
        if rho_grid is not None:
            parse_rho(rho_grid, "--rho-grid")
        entries = data.get("entries")
        if not isinstance(entries, list) or not entries:
            raise SpecError(f"{where}: 'entries' must be a non-empty list of workload entries")
        defaults = {k: data[k] for k in DEFAULT_KEYS if k in data}
        checked = []
        for i, entry in enumerate(entries):
            at = f"{where}: entries[{i}]"
            checked.append(_check_entry(_check_keys(entry, ENTRY_KEYS, at), defaults, rho_grid, at))
        return SweepPlan(path, str(data.get("name", path.stem)), checked)


def load_sweep(path: str | Path, rho_grid: str | None = None) -> Sweep:
    """Read, check and expand a spec, every run listed (``open_sweep`` for a lazy one)."""
    plan = open_sweep(path, rho_grid)
    return Sweep(name=plan.name, configs=list(plan))
