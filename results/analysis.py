"""From stored runs to numbers: setups, base vs SAM per width, rho chosen on validation, gains
with confidence intervals, and the cross-width trend. Pure functions of store rows; the table
and figure modules only format what this returns.

Rules (issue 9; PAPERS.md "pitfalls": the official code selected on test):
- Runs are grouped into *setups*: everything in the stored run config except what varies inside
  one table (width, seed, optimizer, rho and the SAM variant) and the ablation fields. Runs of
  different presets or config overrides are never averaged together.
- For each width, SAM's setting (rho; adaptive and m-sharpness if several were run) is the one
  with the best mean over seeds of the *validation* metric at each run's best epoch. A setting
  with a diverged seed is not eligible (it does not train reliably). Test numbers are reported
  for that choice only.
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

from results.paper_numbers import PAPER, PAPER_ABLATIONS, PaperResult, paper_at
from results.stats import ci_half_width, mean_std, spearman
from results.store import Store

__all__ = [
    "ABLATION_FIELDS",
    "WidthRow",
    "Experiment",
    "Trend",
    "experiments",
    "compare_runs",
    "trend",
    "ablation_experiments",
    "paper_ablation",
    "optimizer_label",
    "is_late_phase",
]

ABLATION_FIELDS = ("label_noise", "sparsity", "match_params_of")
"""workload-config fields whose non-default (non-zero) runs go to ablation tables"""
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


@dataclass
class WidthRow:
    """Base vs SAM at one width (and, in an ablation, one ablation value)."""

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


@dataclass
class Experiment:
    """One workload under one setup: its rows by width."""

    workload: str
    domain: str
    setup: dict[str, Any]  # the fields that tell this setup apart from the workload's others
    rows: list[WidthRow]
    base_optimizer: str
    config: dict[str, Any] = field(default_factory=dict)  # the whole setup (run + workload config)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.setup.items()))


def is_late_phase(run: dict[str, Any]) -> bool:
    """A SAM run that used the ascent for only part of training (``sam_start``/``sam_end``);
    such runs are compared in results/late_phase.py, not in the width tables."""
    cfg = (run.get("config") or {}).get("run", {})
    return (cfg.get("sam_start", 0.0), cfg.get("sam_end", 1.0)) != (0.0, 1.0)


def _reportable(store: Store, workload: str | None = None) -> list[dict[str, Any]]:
    """Finished runs (any end status) of full-length SAM or the base optimizer."""
    return [
        r
        for r in store.runs(workload=workload)
        if r["status"] != "running" and not is_late_phase(r)
    ]


def optimizer_label(name: str) -> str:
    """'sgd' -> 'SGD' for tables and legends; unknown names as they are."""
    return _OPTIMIZER_LABELS.get(name, name)


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _run_config(run: dict[str, Any]) -> dict[str, Any]:
    """The stored RunConfig dict (rows written by hand in tests may have only some fields)."""
    cfg = run.get("config") or {}
    return dict(cfg.get("run") or {"preset": run["preset"]})


def _setup_of(run: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """(setup fields, ablation values) of a run, flattened: workload-config keys at top level."""
    cfg = _run_config(run)
    workload_cfg = dict(cfg.pop("workload_config", None) or {})
    setup = {k: v for k, v in cfg.items() if k not in _WITHIN_TABLE}
    ablation = {k: float(workload_cfg.pop(k, 0.0) or 0.0) for k in ABLATION_FIELDS}
    setup.update(workload_cfg)
    return setup, ablation


def _key(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def _sam_setting(run: dict[str, Any]) -> tuple[float, str]:
    cfg = _run_config(run)
    parts = (["adaptive"] if cfg.get("adaptive") else []) + (
        [f"m={cfg['m_sharpness']}"] if cfg.get("m_sharpness") else []
    )
    return run["rho"], " ".join(parts)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def compare_runs(runs: list[dict[str, Any]], width: float) -> WidthRow | None:
    """Base vs SAM among ``runs`` (one width, one setup; any status). None without done runs."""
    done = [r for r in runs if r["status"] == "done" and r.get("summary")]
    if not done:
        return None
    target, mode = done[0]["summary"]["target"], done[0]["summary"]["target_mode"]
    sign = 1.0 if mode == "max" else -1.0  # gain = sign * (sam - base)
    val_key, test_key = f"best/val_{target}", f"best/test_{target}"

    base_runs = {
        r["seed"]: r for r in done if r["optimizer"] != "sam" and _finite(r["summary"][test_key])
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


def _base_optimizer(runs: list[dict[str, Any]]) -> str:
    names = {r["base_optimizer"] for r in runs}
    return names.pop() if len(names) == 1 else "base"


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
        by_width: dict[float, list[dict]] = defaultdict(list)
        for r in rs:
            by_width[r["width"]].append(r)
        rows = [row for w in sorted(by_width) if (row := compare_runs(by_width[w], w))]
        if rows:
            out.append(
                Experiment(workload, rs[0]["domain"], label, rows, _base_optimizer(rs), setup)
            )
    return sorted(out, key=lambda e: e.label)


def ablation_experiments(store: Store, field_name: str) -> list[Experiment]:
    """Per workload and setup, rows by (width, value of ``field_name``) wherever some run has a
    non-default value; the clean runs of the same setup are the value-0 rows. Runs with another
    ablation field set are left to that field's table."""
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
            cells: dict[tuple[float, float], list[dict]] = defaultdict(list)
            for value, r in pairs:
                cells[(r["width"], value)].append(r)
            rows = []
            for width, value in sorted(cells):
                row = compare_runs(cells[(width, value)], width)
                if row:
                    row.ablation_value = value
                    rows.append(row)
            if rows:
                out.append(
                    Experiment(workload, rs[0]["domain"], label, rows, _base_optimizer(rs), setup)
                )
    return out


def paper_ablation(
    workload: str, field_name: str, value: float, setup: dict[str, Any]
) -> PaperResult | None:
    """The paper's numbers for this ablation, if it reports them (extra fields must match)."""
    for a in PAPER_ABLATIONS:
        if (a.workload, a.field) == (workload, field_name) and abs(a.value - value) < 1e-9:
            if all(setup.get(k, v) == v for k, v in a.extra.items()):
                return a.result
    return None


@dataclass
class Trend:
    """The cross-width summary of one experiment, ours beside the paper's."""

    widths: list[float]
    gain_first: float
    gain_last: float
    spearman: float  # of gain vs log(params); nan with fewer than 3 widths
    paper_first: float | None
    paper_last: float | None
    paper_spearman: float  # the paper's gains at the widths we ran, same x
    sign_agree: tuple[int, int]  # (widths where the signs agree, widths compared)
    trend_agree: bool | None  # sign of our Spearman == the paper's; None when either is nan


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def trend(exp: Experiment) -> Trend:
    rows = [r for r in exp.rows if _finite(r.gain[0])]
    paper = PAPER.get(exp.workload)
    xs = [math.log(r.params) if r.params else math.nan for r in rows]
    ys = [r.gain[0] for r in rows]
    ours = spearman(xs, ys)
    paper_ys = [paper_at(paper, r.width) for r in rows]
    matched = [(x, p) for x, p in zip(xs, paper_ys, strict=True) if p is not None]
    theirs = spearman([x for x, _ in matched], [p for _, p in matched])
    compared = [(r.gain[0], p) for r, p in zip(rows, paper_ys, strict=True) if p is not None]
    agree = sum(_sign(g) == _sign(p) for g, p in compared)
    both = not (math.isnan(ours) or math.isnan(theirs))
    return Trend(
        widths=[r.width for r in exp.rows],
        gain_first=ys[0] if ys else math.nan,
        gain_last=ys[-1] if ys else math.nan,
        spearman=ours,
        paper_first=paper_ys[0] if paper_ys else None,
        paper_last=paper_ys[-1] if paper_ys else None,
        paper_spearman=theirs,
        sign_agree=(agree, len(compared)),
        trend_agree=(_sign(ours) == _sign(theirs)) if both else None,
    )
