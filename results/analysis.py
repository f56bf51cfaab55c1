"""From stored runs to numbers: setups, base vs SAM per width, rho chosen on validation, gains
with confidence intervals, the cross-width trend test, and the paper's reference for the setup.
Pure functions of store rows; the table and figure modules only format what this returns.

Rules (issue 9; PAPERS.md "pitfalls": the official code selected on test):
- Runs are grouped into *setups*: everything in the stored run config except what varies inside
  one table (width, seed, optimizer, rho and the SAM variant) and the ablation fields. Runs of
  different presets or config overrides are never averaged together.
- Each experiment reports at one *protocol* (issue 17; PAPERS.md "Protocol per figure"):
  ``best-val`` = each run's metrics at its best validation epoch (Fig. 1), ``final`` = at its
  last epoch (label noise, PoS without early stopping). The protocol is the run config's
  ``protocol`` field (``final`` runs are their own setup; ``best-val`` runs share one with runs
  stored before the field existed, as their run ids do). Runs that predate the field report
  ``best-val``, except in the label-noise ablation, which the paper reports at the final
  epoch. The label-noise table shows the other protocol beside each cell.
- For each width, SAM's setting (rho; adaptive and m-sharpness if several were run) is the one
  with the best mean over seeds of the *validation* metric at the protocol's epoch (the best
  epoch, or the last). A setting with a diverged seed is not eligible (it does not train
  reliably). Test numbers are reported for that choice only, at the same epoch.
- Final-epoch metrics are the summary's ``final/val_<target>`` and ``final/test_<target>``;
  runs stored before those keys existed fall back to the last ``val/<target>`` and
  ``test/<target>`` rows of the metrics table.
- The cross-width trend is results/trend.py's test on the seed-level paired gains; the paper's
  numbers are attached only to experiments of the exact setup they came from
  (results/paper_numbers.py ``reference_for``).
- Gain = SAM's improvement over the base optimizer in the metric's better direction, per seed
  (paired: same seed), then mean and 95% Student-t half-width over those seeds. Unpaired base
  and SAM seeds give the difference of means, without an interval.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from results.paper_numbers import (
    ABLATION_FIELDS,
    AXIS_KINDS,
    PRESET_CHANGES,
    PROTOCOLS,
    PaperReference,
    fig1_reference,
    metric_unit,
    paper_at,
    reference_for,
    reference_slope,
)
from results.stats import ci_half_width, mean_std
from results.store import Store
from results.trend import TrendTest, trend_test

__all__ = [
    "ABLATION_FIELDS",
    "PROTOCOLS",
    "DEFAULT_PROTOCOL",
    "WidthRow",
    "Experiment",
    "Trend",
    "experiments",
    "compare_runs",
    "trend",
    "ablation_experiments",
    "AXIS_DEFAULTS",
    "weight_decay_experiments",
    "longer_base_experiments",
    "reference_at",
    "optimizer_label",
    "is_late_phase",
    "setup_key",
    "setup_labels",
]

DEFAULT_PROTOCOL = "best-val"
# The protocol an ablation reports at when its runs do not declare one (PAPERS.md: label
# noise is reported at the final epoch: SGD's accuracy falls with width only there) ...
_ABLATION_PROTOCOL = {"label_noise": "final"}
# ... and the ablations whose tables show the other protocol beside it ("show both").
_SHOW_BOTH = ("label_noise",)
_OPTIMIZER_LABELS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "sam": "SAM"}
# Run-config fields that vary inside one table. A new run field that only SAM runs set (so base
# and SAM runs would differ in it) must be listed here, or base and SAM land in separate setups.
_WITHIN_TABLE = (
    "workload",
    "width",
    "seed",
    "optimizer",
    "rho",
    "adaptive",
    "m_sharpness",
    "sam_start",
    "sam_end",
)
_PREFIX = {"best-val": "best", "final": "final"}  # summary key prefix per protocol
# Workload-config fields whose clean value is not 0, per workload (issue 22): the depth
# (hidden layers; BasicBlocks per stage) and the linearized model's output scale. A run
# stored before the field existed has the clean value. Runs at another value are ablation
# rows (``ablation_experiments``), never a width table of their own.
AXIS_DEFAULTS: dict[str, dict[str, float]] = {
    "depth": {"mnist-mlp": 2, "cifar10-resnet18": 2},
    "alpha": {"cifar10-vgg11-linearized": 1.0},
}


@dataclass
class WidthRow:
    """Base vs SAM at one width (and, in an ablation, one ablation value), at one protocol."""

    width: float
    params: int | None
    target: str
    mode: str
    base: tuple[float, float]  # test metric, mean and std over seeds
    sam: tuple[float, float]  # test metric of the chosen SAM setting, mean and std
    rho: float | None  # chosen on validation
    sam_variant: str  # "" for plain SAM, "adaptive", "m=16", ...
    gain: tuple[float, float]  # mean and std over paired seeds
    gain_ci95: float  # Student-t half-width; nan for fewer than 2 paired seeds
    gains: list[float]  # per paired seed
    seeds: int  # paired seeds (or the larger side when unpaired)
    diverged: int  # diverged runs at this width (any optimizer, any rho)
    base_ids: list[str] = field(default_factory=list)
    sam_ids: list[str] = field(default_factory=list)
    ablation_value: float | None = None
    protocol: str = DEFAULT_PROTOCOL  # the epoch the metrics (val for rho, test) were taken at
    alt: WidthRow | None = None  # the same cell at the other protocol, where a table shows both
    sam_by_rho: dict[float, tuple[float, float]] = field(default_factory=dict)
    """test metric (mean, std over seeds) of plain SAM at every rho run, chosen or not"""
    unit: str = ""  # the target's unit as its runs stored it ('' for stores before it)
    choices: dict[str, float] = field(default_factory=dict)
    """other settings chosen or paired for this row (e.g. each optimizer's weight decay)"""
    changed_from_preset: tuple[str, ...] | None = None
    """workload-config fields its runs changed from their preset; None: stored before runs
    recorded it"""


@dataclass
class Experiment:
    """One workload under one setup: its rows by width."""

    workload: str
    domain: str
    setup: dict[str, Any]  # the fields that tell this setup apart from the workload's others
    rows: list[WidthRow]
    base_optimizer: str
    config: dict[str, Any] = field(default_factory=dict)  # the whole setup (run + workload config)
    protocol: str = DEFAULT_PROTOCOL
    ablation: str | None = None  # the ablation field whose value each row carries
    kind: str = "width"  # the comparison (results/paper_numbers.py KINDS) its reference has

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.setup.items()))

    @property
    def unit(self) -> str:
        """The target's unit: as the runs stored it (Target.unit/scale), else as
        results/paper_numbers.py knows it for stores written before runs stored it."""
        return next((r.unit for r in self.rows if r.unit), "") or metric_unit(self.workload)

    @property
    def reference(self) -> PaperReference | None:
        """The paper's numbers for this setup (a width table without ablation values)."""
        return reference_at(self) if self.ablation is None else None


def reference_at(exp: Experiment, row: WidthRow | None = None) -> PaperReference | None:
    """The paper's reference for ``row`` of ``exp`` (its ablation value and protocol), or for the
    experiment as a whole; None unless the setup is exactly the paper's (paper_numbers)."""
    config = {**exp.config, **dict.fromkeys(ABLATION_FIELDS, 0.0)}
    changed = changed_from_preset([row] if row is not None else exp.rows)
    if changed is not None:
        config[PRESET_CHANGES] = list(changed)
    protocol = row.protocol if row is not None else exp.protocol
    if exp.kind != "width":  # weight-decay grid, SGD for longer: the rows are widths
        return reference_for(exp.workload, config, protocol, kind=exp.kind)
    if exp.ablation in AXIS_KINDS:  # the reference's axis is the field (depth, alpha)
        if row is None:
            return None
        config.update({exp.ablation: row.ablation_value, "width": row.width})
        return reference_for(exp.workload, config, protocol, kind=AXIS_KINDS[exp.ablation])
    if exp.ablation is not None and row is not None:
        config[exp.ablation] = row.ablation_value or 0.0
    return reference_for(exp.workload, config, protocol)


def is_late_phase(run: dict[str, Any]) -> bool:
    """A SAM run that used the ascent for only part of training (``sam_start``/``sam_end``);
    such runs are compared in results/late_phase.py, not in the width tables."""
    cfg = (run.get("config") or {}).get("run", {})
    return (cfg.get("sam_start", 0.0), cfg.get("sam_end", 1.0)) != (0.0, 1.0)


def _with_final(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """The run with ``final/val_<t>`` and ``final/test_<t>`` in its summary: the stored ones,
    else a library loop's ``final/val/<t>``, else the last metrics rows (stores written before
    the runner kept final-epoch metrics)."""
    summary = run.get("summary")
    if not summary or "target" not in summary:
        return run
    t = summary["target"]
    keys = (f"final/val_{t}", f"final/test_{t}")
    if all(k in summary for k in keys):
        return run
    legacy = (f"final/val/{t}", f"final/test/{t}")
    if all(k in summary for k in legacy):
        found = [summary[k] for k in legacy]
    else:
        found = _last_rows(store, run["id"], t)
    return {**run, "summary": {**summary, **dict(zip(keys, found, strict=True))}}


def _last_rows(store: Store, run_id: str, target: str) -> list[float | None]:
    """val/<t> and test/<t> at the highest step that has the validation metric."""
    val = store.metrics(run_id, f"val/{target}")
    if not val:
        return [None, None]
    step = val[-1]["step"]
    test = {m["step"]: m["value"] for m in store.metrics(run_id, f"test/{target}")}
    return [_nan_if_none(val[-1]["value"]), _nan_if_none(test.get(step))]


def _nan_if_none(v: float | None) -> float:
    return math.nan if v is None else v  # SQLite keeps NaN as NULL


def _reportable(store: Store, workload: str | None = None) -> list[dict[str, Any]]:
    """Finished runs (any end status) of full-length SAM or the base optimizer, each with its
    final-epoch metrics resolved."""
    return [
        _with_final(store, r)
        for r in store.runs(workload=workload)
        if r["status"] != "running" and not is_late_phase(r)
    ]


def optimizer_label(name: str) -> str:
    """'sgd' -> 'SGD' for tables and legends; unknown names as they are."""
    return _OPTIMIZER_LABELS.get(name, name)


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _run_config(run: dict[str, Any]) -> dict[str, Any]:
    """The stored RunConfig dict (rows written by hand in tests may have only some fields); the
    preset always comes from the run's row, so a partial dict never drops it."""
    cfg = run.get("config") or {}
    return {"preset": run["preset"], **(cfg.get("run") or {})}


def _setup_of(run: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """(setup fields, ablation values) of a run, flattened: workload-config keys at top level."""
    cfg = _run_config(run)
    workload_cfg = dict(cfg.pop("workload_config", None) or {})
    setup = {k: v for k, v in cfg.items() if k not in _WITHIN_TABLE}
    if setup.get("protocol") == DEFAULT_PROTOCOL:
        # as in the run id: runs stored before the field existed are the same experiment
        del setup["protocol"]
    ablation = {k: float(workload_cfg.pop(k, 0.0) or 0.0) for k in ABLATION_FIELDS}
    setup.update(workload_cfg)
    return setup, ablation


def setup_key(run: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(a key equal for runs of the same setup, the setup with its ablation values): the
    grouping of the width tables, for the late-phase and sharpness reports. Late-phase fields
    and everything else that varies inside a table are left out."""
    setup, ablation = _setup_of(run)
    full = {**setup, **{k: v for k, v in ablation.items() if v}}
    return _key([run["workload"], setup, ablation]), full


def _key(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def _sam_setting(run: dict[str, Any]) -> tuple[float, str]:
    cfg = _run_config(run)
    parts = (["adaptive"] if cfg.get("adaptive") else []) + (
        [f"m={cfg['m_sharpness']}"] if cfg.get("m_sharpness") else []
    )
    return run["rho"], " ".join(parts)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def compare_runs(
    runs: list[dict[str, Any]], width: float, protocol: str = DEFAULT_PROTOCOL
) -> WidthRow | None:
    """Base vs SAM among ``runs`` (one width, one setup; any status) at ``protocol``: rho on the
    mean validation metric and test at the same epoch. None without done runs."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} not in {PROTOCOLS}")
    done = [r for r in runs if r["status"] == "done" and r.get("summary")]
    if not done:
        return None
    target, mode = done[0]["summary"]["target"], done[0]["summary"]["target_mode"]
    sign = 1.0 if mode == "max" else -1.0  # gain = sign * (sam - base)
    prefix = _PREFIX[protocol]
    val_key, test_key = f"{prefix}/val_{target}", f"{prefix}/test_{target}"

    base_runs = {
        r["seed"]: r
        for r in done
        if r["optimizer"] != "sam" and _finite(r["summary"].get(test_key))
    }
    candidates: dict[tuple[float, str], dict[int, dict]] = defaultdict(dict)
    unreliable = {
        _sam_setting(r) for r in runs if r["optimizer"] == "sam" and r["status"] == "diverged"
    }
    for r in done:
        s = r["summary"]
        if r["optimizer"] == "sam" and _finite(s.get(val_key)) and _finite(s.get(test_key)):
            candidates[_sam_setting(r)][r["seed"]] = r
    eligible = sorted(k for k in candidates if k not in unreliable)
    chosen, sam_runs = None, {}
    if eligible:
        # max keeps the first of equal scores: ties go to the smaller rho
        chosen = max(
            eligible,
            key=lambda k: (
                sign * mean_std([r["summary"][val_key] for r in candidates[k].values()])[0]
            ),
        )
        sam_runs = candidates[chosen]
    base = {seed: r["summary"][test_key] for seed, r in base_runs.items()}
    sam = {seed: r["summary"][test_key] for seed, r in sam_runs.items()}
    paired = sorted(set(base) & set(sam))
    gains = [sign * (sam[s] - base[s]) for s in paired]
    if gains:
        gain, half = mean_std(gains), ci_half_width(gains)
    elif base and sam:  # no common seed: difference of means, no interval
        gain = (
            sign * (mean_std(list(sam.values()))[0] - mean_std(list(base.values()))[0]),
            math.nan,
        )
        half = math.nan
    else:
        gain, half = (math.nan, math.nan), math.nan
    params = next((r["n_params"] for r in done if r["n_params"] is not None), None)
    by_rho = {
        rho: mean_std([r["summary"][test_key] for r in seeds.values()])
        for (rho, variant), seeds in sorted(candidates.items())
        if not variant
    }
    return WidthRow(
        unit=done[0]["summary"].get("target_unit") or "",
        sam_by_rho=by_rho,
        width=width,
        params=params,
        target=target,
        mode=mode,
        base=mean_std(list(base.values())),
        sam=mean_std(list(sam.values())),
        rho=None if chosen is None else chosen[0],
        sam_variant="" if chosen is None else chosen[1],
        gain=gain,
        gain_ci95=half,
        gains=gains,
        seeds=len(paired) or max(len(base), len(sam)),
        diverged=sum(r["status"] == "diverged" for r in runs),
        base_ids=[base_runs[s]["id"] for s in sorted(base_runs)],
        sam_ids=[sam_runs[s]["id"] for s in sorted(sam_runs)],
        protocol=protocol,
        changed_from_preset=_changed_from_preset(done),
    )


def changed_from_preset(rows: list[WidthRow]) -> tuple[str, ...] | None:
    """The union over ``rows`` of the fields their runs changed from their preset (None when
    no row's runs recorded it)."""
    return _union_of_changes(r.changed_from_preset for r in rows)


def _changed_from_preset(runs: list[dict[str, Any]]) -> tuple[str, ...] | None:
    """The union over ``runs`` of the fields they changed from their preset (None when no run
    recorded it: stores written before the field)."""
    return _union_of_changes((r.get("config") or {}).get("changed_from_preset") for r in runs)


def _union_of_changes(changes: Iterable[Iterable[str] | None]) -> tuple[str, ...] | None:
    """Sorted union of the recorded change lists; None when none was recorded."""
    recorded = [c for c in changes if c is not None]
    return tuple(sorted(set().union(*recorded))) if recorded else None


def _group_by_setup(
    runs: list[dict[str, Any]],
) -> dict[str, tuple[dict[str, Any], dict[str, float], list[dict]]]:
    groups: dict[str, tuple[dict, dict, list]] = {}
    for r in runs:
        setup, ablation = _setup_of(r)
        k = _key([setup, ablation])
        groups.setdefault(k, (setup, ablation, []))[2].append(r)
    return groups


def _distinguishing(setups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each setup reduced to the fields whose value differs between the setups."""
    keys = sorted({k for s in setups for k in s})
    differ = [k for k in keys if len({_key(s.get(k)) for s in setups}) > 1]
    return [{k: s.get(k) for k in differ} for s in setups]


def setup_labels(setups: list[dict[str, Any]]) -> list[str]:
    """'k=v, ...' of the fields that tell each setup apart from the others ('' when alone)."""
    return [
        ", ".join(f"{k}={_short(v)}" for k, v in sorted(d.items())) for d in _distinguishing(setups)
    ]


def _base_optimizer(runs: list[dict[str, Any]]) -> str:
    names = {r["base_optimizer"] for r in runs}
    return names.pop() if len(names) == 1 else "base"


def _protocol(runs: list[dict[str, Any]], ablation: str | None = None) -> str:
    """The protocol the runs declare (``config["run"]["protocol"]``; one setup declares one),
    else, for runs stored before the field existed, the experiment kind's default."""
    declared = {_run_config(r).get("protocol") for r in runs} - {None}
    if len(declared) > 1:  # cannot happen: a non-default protocol is part of the setup
        raise ValueError(f"one setup with several protocols {sorted(declared)}")
    protocol = (
        declared.pop() if declared else _ABLATION_PROTOCOL.get(ablation or "", DEFAULT_PROTOCOL)
    )
    if protocol not in PROTOCOLS:
        raise ValueError(f"stored protocol {protocol!r} not in {PROTOCOLS}")
    return protocol


def experiments(store: Store, workload: str) -> list[Experiment]:
    """The workload's experiments without ablations (ablation fields at their defaults)."""
    runs = [r for r in _reportable(store, workload) if not _off_axis(r)]
    groups = [
        (setup, rs)
        for setup, ablation, rs in _group_by_setup(runs).values()
        if not any(ablation.values())
    ]
    labels = _distinguishing([s for s, _ in groups])
    out = []
    for (setup, rs), label in zip(groups, labels, strict=True):
        protocol = _protocol(rs)
        by_width: dict[float, list[dict]] = defaultdict(list)
        for r in rs:
            by_width[r["width"]].append(r)
        rows = [row for w in sorted(by_width) if (row := compare_runs(by_width[w], w, protocol))]
        if rows:
            out.append(
                Experiment(
                    workload,
                    rs[0]["domain"],
                    label,
                    rows,
                    _base_optimizer(rs),
                    setup,
                    protocol=protocol,
                )
            )
    return sorted(out, key=lambda e: e.label)


def ablation_experiments(store: Store, field_name: str) -> list[Experiment]:
    """Per workload and setup, rows by (width, value of ``field_name``) wherever some run has a
    non-default value; the clean runs of the same setup are the value-0 rows. Runs with another
    ablation field set are left to that field's table. Label noise reports the final epoch by
    default, with each cell at the best validation epoch in ``row.alt``."""
    out = []
    runs = _reportable(store)
    by_workload: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_workload[r["workload"]].append(r)
    for workload, rs in sorted(by_workload.items()):
        # regroup with the ablation field ignored, so value 0 and value v share a setup
        axis = AXIS_DEFAULTS.get(field_name)
        if axis is not None and workload not in axis:
            continue
        groups: dict[str, tuple[dict, list]] = {}
        for r in rs:
            setup, ablation = _setup_of(r)
            if any(v for k, v in ablation.items() if k != field_name):
                continue
            if axis is not None:  # a field with a clean value of its own (depth, alpha)
                if any(_off_axis(r, other) for other in AXIS_DEFAULTS if other != field_name):
                    continue
                ablation[field_name] = float(setup.pop(field_name, axis[workload]))
            groups.setdefault(_key(setup), (setup, []))[1].append((ablation[field_name], r))
        clean = axis[workload] if axis is not None else 0.0
        groups = {k: g for k, g in groups.items() if any(v != clean for v, _ in g[1])}
        labels = _distinguishing([s for s, _ in groups.values()])
        for (setup, pairs), label in zip(groups.values(), labels, strict=True):
            protocol = _protocol([r for _, r in pairs], field_name)
            other = next(p for p in PROTOCOLS if p != protocol)
            cells: dict[tuple[float, float], list[dict]] = defaultdict(list)
            for value, r in pairs:
                cells[(r["width"], value)].append(r)
            rows = []
            for width, value in sorted(cells):
                row = compare_runs(cells[(width, value)], width, protocol)
                if row:
                    row.ablation_value = value
                    if field_name in _SHOW_BOTH:
                        row.alt = compare_runs(cells[(width, value)], width, other)
                    rows.append(row)
            if rows:
                out.append(
                    Experiment(
                        workload,
                        rs[0]["domain"],
                        label,
                        rows,
                        _base_optimizer(rs),
                        setup,
                        protocol=protocol,
                        ablation=field_name,
                    )
                )
    return out


def _off_axis(run: dict[str, Any], only: str | None = None) -> bool:
    """The run has a depth or alpha (``AXIS_DEFAULTS``; only ``only`` if given) other than its
    workload's clean value."""
    wc = _run_config(run).get("workload_config") or {}
    for name, defaults in AXIS_DEFAULTS.items():
        if only not in (None, name) or run["workload"] not in defaults:
            continue
        if float(wc.get(name, defaults[run["workload"]])) != float(defaults[run["workload"]]):
            return True
    return False


def _mean_val(runs: list[dict[str, Any]], key: str) -> float:
    vals = [r["summary"].get(key) for r in runs]
    return (
        mean_std([v for v in vals if _finite(v)])[0] if all(_finite(v) for v in vals) else math.nan
    )


def _grouped_without(
    runs: list[dict[str, Any]], name: str
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Runs without ablations (or off-axis depth/alpha), grouped by setup with the
    workload-config field ``name`` left out (so its values share a setup), with its values."""
    groups: dict[str, tuple[dict, list]] = {}
    for r in runs:
        setup, ablation = _setup_of(r)
        if any(ablation.values()) or _off_axis(r) or name not in setup:
            continue
        value = setup.pop(name)
        groups.setdefault(_key([r["workload"], setup]), (setup, []))[1].append((value, r))
    return list(groups.values())


def weight_decay_experiments(store: Store) -> list[Experiment]:
    """The paper's weight-decay grid (Fig. 18): per workload, setup and width, the base
    optimizer and SAM each at its own weight decay chosen on validation (SAM jointly with rho:
    the (wd, rho) of the best mean validation metric), test at that choice; only setups run at
    two or more weight decays. A (wd, setting) with a diverged seed is not eligible. The row's
    ``choices`` hold each optimizer's weight decay."""
    out = []
    for setup, pairs in _grouped_without(_reportable(store), "weight_decay"):
        if len({wd for wd, _ in pairs}) < 2:
            continue
        runs = [r for _, r in pairs]
        protocol = _protocol(runs)
        by_width: dict[float, list[tuple[float, dict]]] = defaultdict(list)
        for wd, r in pairs:
            by_width[r["width"]].append((wd, r))
        rows = []
        for width in sorted(by_width):
            row = _best_over(by_width[width], width, protocol, "weight_decay")
            if row is not None:
                rows.append(row)
        if rows:
            out.append(
                Experiment(
                    runs[0]["workload"],
                    runs[0]["domain"],
                    {},
                    rows,
                    _base_optimizer(runs),
                    setup,
                    protocol=protocol,
                    kind="best over weight decay",
                )
            )
    return _labelled(out)


def _best_over(
    pairs: list[tuple[float, dict[str, Any]]], width: float, protocol: str, name: str
) -> WidthRow | None:
    """Base at its best value of ``name`` and SAM at its best (value, rho, variant), both on
    the mean validation metric; then ``compare_runs`` on the chosen runs."""
    done = [r for _, r in pairs if r["status"] == "done" and r.get("summary")]
    if not done:
        return None
    target, mode = done[0]["summary"]["target"], done[0]["summary"]["target_mode"]
    sign = 1.0 if mode == "max" else -1.0
    val_key = f"{_PREFIX[protocol]}/val_{target}"
    settings: dict[tuple, list[dict]] = defaultdict(list)
    for value, r in pairs:
        sam = r["optimizer"] == "sam"
        settings[(sam, value, *(_sam_setting(r) if sam else (0.0, "")))].append(r)
    best: dict[bool, tuple | None] = {False: None, True: None}
    for key, rs in sorted(settings.items(), key=lambda kv: str(kv[0])):
        if any(r["status"] == "diverged" for r in rs):
            continue  # does not train reliably
        score = sign * _mean_val([r for r in rs if r["status"] == "done"], val_key)
        if math.isnan(score):
            continue
        if best[key[0]] is None or score > best[key[0]][0]:
            best[key[0]] = (score, key)
    if best[False] is None or best[True] is None:
        return None
    chosen = settings[best[False][1]] + settings[best[True][1]]
    row = compare_runs(chosen, width, protocol)
    if row is not None:
        row.choices = {f"base {name}": best[False][1][1], f"SAM {name}": best[True][1][1]}
        row.diverged = sum(r["status"] == "diverged" for _, r in pairs)
    return row


def longer_base_experiments(store: Store, factor: int = 2) -> list[Experiment]:
    """Compute-matched comparison (App. E: SGD 400 epochs vs SAM 200): per setup and width,
    the base optimizer's runs at ``factor`` x the epochs of SAM's runs (a SAM step costs two
    passes), rho chosen on validation as everywhere. ``choices`` hold both epoch counts and,
    where the base was also run at SAM's epochs, its test metric there (``base at SAM
    epochs``)."""
    out = []
    for setup, pairs in _grouped_without(_reportable(store), "num_epochs"):
        sam_epochs = sorted({e for e, r in pairs if r["optimizer"] == "sam"})
        for n in sam_epochs:
            chosen = [
                (e, r)
                for e, r in pairs
                if (r["optimizer"] == "sam" and e == n)
                or (r["optimizer"] != "sam" and e == factor * n)
            ]
            if not any(r["optimizer"] != "sam" for _, r in chosen):
                continue
            runs = [r for _, r in chosen]
            protocol = _protocol(runs)
            by_width: dict[float, list[dict]] = defaultdict(list)
            for r in runs:
                by_width[r["width"]].append(r)
            short: dict[float, list[dict]] = defaultdict(list)
            for e, r in pairs:
                if r["optimizer"] != "sam" and e == n:
                    short[r["width"]].append(r)
            rows = []
            for width in sorted(by_width):
                row = compare_runs(by_width[width], width, protocol)
                if row is None:
                    continue
                row.choices = {"base epochs": float(factor * n), "SAM epochs": float(n)}
                key = f"{_PREFIX[protocol]}/test_{row.target}"
                tests = [
                    r["summary"][key]
                    for r in short.get(width, [])
                    if r["status"] == "done" and _finite((r.get("summary") or {}).get(key))
                ]
                if tests:
                    row.choices["base at SAM epochs"] = mean_std(tests)[0]
                rows.append(row)
            if rows:
                out.append(
                    Experiment(
                        runs[0]["workload"],
                        runs[0]["domain"],
                        {},
                        rows,
                        _base_optimizer(runs),
                        {**setup, "num_epochs": n},
                        protocol=protocol,
                        kind="SGD 400 epochs vs SAM 200"
                        if factor == 2
                        else f"base x{factor} epochs",
                    )
                )
    return _labelled(out)


def _labelled(exps: list[Experiment]) -> list[Experiment]:
    """Each experiment's ``setup`` = the fields that tell it apart from the same workload's."""
    by_workload: dict[str, list[Experiment]] = defaultdict(list)
    for e in exps:
        by_workload[e.workload].append(e)
    for group in by_workload.values():
        for e, label in zip(group, _distinguishing([e.config for e in group]), strict=True):
            e.setup = label
    return sorted(exps, key=lambda e: (e.workload, e.label))


@dataclass
class Trend:
    """The cross-width summary of one experiment: results/trend.py's test on the seed-level
    paired gains, and the paper's numbers only when the setup is exactly the paper's."""

    widths: list[float]
    test: TrendTest
    reference: PaperReference | None
    paper_gains: list[float | None]  # the paper's gain at each of our widths (None: not given)
    paper_slope: float | None  # the paper's gain per decade of parameters, over its widths
    sign_agree: tuple[int, int]  # (widths where our gain has the paper's sign, widths compared)
    context: PaperReference | None = None
    """for a width table of another recipe (scaled down), the paper's Fig. 1 reference of the
    same workload: its slope says what effect size the seeds had to be able to detect"""
    context_slope: float | None = None  # the context reference's slope per decade

    @property
    def spearman(self) -> float:
        """Of mean gain vs log params: a column, never a verdict; nan for < 3 widths."""
        return self.test.spearman


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def trend(exp: Experiment, *, n_boot: int = 2000, n_perm: int = 2000) -> Trend:
    """The trend test over ``exp``'s widths (widths without a parameter count or without paired
    seeds drop out) and, for the paper's setup, its gains at our widths and its slope."""
    rows = [r for r in exp.rows if r.params and r.gains]
    test = trend_test(
        [float(r.params) for r in rows], [r.gains for r in rows], n_boot=n_boot, n_perm=n_perm
    )
    ref = exp.reference
    paper_gains = [paper_at(ref.result, r.width) if ref else None for r in exp.rows]
    compared = [
        (r.gain[0], p)
        for r, p in zip(exp.rows, paper_gains, strict=True)
        if p is not None and _finite(r.gain[0])
    ]
    ours_params = {r.width: float(r.params) for r in exp.rows if r.params}
    context = None
    if ref is None and exp.kind == "width" and exp.ablation is None:
        context = fig1_reference(exp.workload)
    return Trend(
        context=context,
        context_slope=reference_slope(context, ours_params),
        widths=[r.width for r in exp.rows],
        test=test,
        reference=ref,
        paper_gains=paper_gains,
        paper_slope=reference_slope(ref, ours_params),
        sign_agree=(sum(_sign(g) == _sign(p) for g, p in compared), len(compared)),
    )
