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
from dataclasses import dataclass, field
from typing import Any

from results.paper_numbers import (
    ABLATION_FIELDS,
    PROTOCOLS,
    PaperReference,
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

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.setup.items()))

    @property
    def reference(self) -> PaperReference | None:
        """The paper's numbers for this setup (a width table without ablation values)."""
        return reference_at(self) if self.ablation is None else None


def reference_at(exp: Experiment, row: WidthRow | None = None) -> PaperReference | None:
    """The paper's reference for ``row`` of ``exp`` (its ablation value and protocol), or for the
    experiment as a whole; None unless the setup is exactly the paper's (paper_numbers)."""
    config = {**exp.config, **dict.fromkeys(ABLATION_FIELDS, 0.0)}
    if exp.ablation is not None and row is not None:
        config[exp.ablation] = row.ablation_value or 0.0
    protocol = row.protocol if row is not None else exp.protocol
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
    return WidthRow(
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
    )


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
    runs = _reportable(store, workload)
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
        groups: dict[str, tuple[dict, list]] = {}
        for r in rs:
            setup, ablation = _setup_of(r)
            if any(v for k, v in ablation.items() if k != field_name):
                continue
            groups.setdefault(_key(setup), (setup, []))[1].append((ablation[field_name], r))
        groups = {k: g for k, g in groups.items() if any(v for v, _ in g[1])}
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
    return Trend(
        widths=[r.width for r in exp.rows],
        test=test,
        reference=ref,
        paper_gains=paper_gains,
        paper_slope=reference_slope(ref, ours_params),
        sign_agree=(sum(_sign(g) == _sign(p) for g, p in compared), len(compared)),
    )
