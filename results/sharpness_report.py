"""Sharpness tables and figures from the store alone (the ``measures`` table next to the runs).

Generalization gap (positive = generalizes worse): the final evaluation's test metric minus its
train metric (sign-flipped for a metric to maximise) when ``train/<target>`` is stored, else
the test metric at the best validation epoch against that validation value. Kendall's tau
(scipy.stats.kendalltau) between each measure and the gap is taken over the individual done
runs of a workload and setup (every width, optimizer, rho and seed); Andriushchenko et al.
(2023) find it near 0 for most sharpness definitions in modern setups. Setups are the main
tables' (results/analysis.py ``setup_key``): runs of different presets or overrides are never
pooled into one table, one tau or one curve.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from results.analysis import setup_key, setup_labels
from results.store import Store

__all__ = ["generalization_gap", "sharpness_tables", "sharpness_figures"]

TABLE_ORDER = (
    "lambda_max",
    "trace",
    "worst_l2",
    "worst_linf",
    "worst_l2_adaptive",
    "worst_linf_adaptive",
    "avg",
    "avg_adaptive",
)
MOMENTS = ("moment_1", "moment_2", "moment_3", "moment_4")


def generalization_gap(store: Store, run: dict[str, Any]) -> float | None:
    """Test minus train (or validation) in the direction where larger = worse; None if unknown."""
    summary = run.get("summary") or {}
    target, mode = summary.get("target"), summary.get("target_mode")
    if target is None:
        return None
    sign = 1.0 if mode == "min" else -1.0
    final: dict[str, float] = {}
    for row in store.metrics(run["id"]):  # ordered by step: the last value of each key wins
        final[row["key"]] = row["value"]
    train, test = final.get(f"train/{target}"), final.get(f"test/{target}")
    if train is not None and test is not None:
        return sign * (test - train)
    val, test = summary.get(f"best/val_{target}"), summary.get(f"best/test_{target}")
    if val is None or test is None:
        return None
    return sign * (test - val)


def _label(run: dict[str, Any]) -> str:
    return f"sam rho={run['rho']:g}" if run["optimizer"] == "sam" else run["optimizer"]


def _runs_with_measures(store: Store) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(workload, setup label) -> done runs that have measures, each with ``measures`` and
    ``gap`` added; the label is '' for a workload's only setup."""
    by_run: dict[str, dict[str, float]] = defaultdict(dict)
    for m in store.measures():
        by_run[m["run_id"]][m["name"]] = m["value"]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    setups: dict[str, tuple[str, dict[str, Any]]] = {}
    for run in store.runs(status="done"):
        if run["id"] in by_run:
            key, setup = setup_key(run)
            setups[key] = (run["workload"], setup)
            groups[key].append(
                {**run, "measures": by_run[run["id"]], "gap": generalization_gap(store, run)}
            )
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for workload in sorted({w for w, _ in setups.values()}):
        keys = [k for k, (w, _) in setups.items() if w == workload]
        labels = setup_labels([setups[k][1] for k in keys])
        for key, label in zip(keys, labels, strict=True):
            out[(workload, label)] = groups[key]
    return out


def _title(workload: str, label: str) -> str:
    return workload + (f" [{label}]" if label else "")


def _stem(workload: str, label: str) -> str:
    return workload + ("_" + re.sub(r"[^A-Za-z0-9.=-]+", "_", label).strip("_") if label else "")


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else math.nan


def _fmt(x: float) -> str:
    return "-" if x != x else f"{x:.4g}"


def _kendall(runs: list[dict[str, Any]], name: str) -> tuple[float, float, int]:
    from scipy.stats import kendalltau  # scipy only where a table is built

    pairs = [
        (r["measures"][name], r["gap"])
        for r in runs
        if name in r["measures"] and r["gap"] is not None and math.isfinite(r["gap"])
    ]
    if len(pairs) < 3:
        return math.nan, math.nan, len(pairs)
    res = kendalltau([p[0] for p in pairs], [p[1] for p in pairs])
    return float(res.statistic), float(res.pvalue), len(pairs)


def sharpness_tables(store: Store) -> str:
    """Markdown: per workload, mean over seeds of each measure and the gap per width and
    optimizer, then Kendall's tau of each measure against the gap across runs."""
    by_workload = _runs_with_measures(store)
    if not by_workload:
        return "(no sharpness measures stored; run runners/sharpness.py)\n"
    parts = []
    for workload, setup in sorted(by_workload):
        runs = by_workload[(workload, setup)]
        present = {n for r in runs for n in r["measures"]}
        cols = [n for n in TABLE_ORDER if n in present]
        groups: dict[tuple[float, str], list[dict[str, Any]]] = defaultdict(list)
        for r in runs:
            groups[(r["width"], _label(r))].append(r)
        lines = [
            f"### {_title(workload, setup)}: sharpness at the end of training (mean over seeds)",
            "",
            "| width | optimizer | seeds | " + " | ".join(cols) + " | gen. gap |",
            "|---:|---|---:|" + "---:|" * (len(cols) + 1),
        ]
        # base optimizer first, then SAM by rho, at each width
        order = sorted(groups, key=lambda k: (k[0], k[1].startswith("sam"), groups[k][0]["rho"]))
        for width, label in order:
            group = groups[(width, label)]
            vals = [_fmt(_mean([r["measures"].get(c) for r in group])) for c in cols]
            gap = _fmt(_mean([r["gap"] for r in group]))
            lines.append(
                f"| {width:g}x | {label} | {len(group)} | " + " | ".join(vals) + f" | {gap} |"
            )
        lines += ["", "| measure | Kendall tau vs gap | p-value | runs |", "|---|---:|---:|---:|"]
        for name in cols + [m for m in MOMENTS if m in present]:
            tau, p, n = _kendall(runs, name)
            lines.append(f"| {name} | {_fmt(tau)} | {_fmt(p)} | {n} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _save(fig: Any, path: Path) -> Path:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def _curves(runs: list[dict[str, Any]], name: str) -> dict[str, tuple[list[float], list[float]]]:
    """optimizer label -> (widths, mean over seeds of measure ``name``)."""
    acc: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if name in r["measures"]:
            acc[_label(r)][r["width"]].append(r["measures"][name])
    return {label: (sorted(ws), [_mean(ws[w]) for w in sorted(ws)]) for label, ws in acc.items()}


def _base_first(item: tuple[str, Any]) -> tuple[bool, str]:
    return item[0].startswith("sam"), item[0]


def sharpness_figures(store: Store, out_dir: str | Path) -> list[Path]:
    """Per workload: lambda_max vs width (base vs SAM, log x) and the Hessian moments
    tr(H^k)/n vs width (one panel per k, log-log). Returns the files written."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for (workload, setup), runs in sorted(_runs_with_measures(store).items()):
        curves = _curves(runs, "lambda_max")
        if curves:
            fig = Figure(figsize=(5, 3.5), layout="constrained")
            ax = fig.add_subplot()
            for label, (ws, ys) in sorted(curves.items(), key=_base_first):
                ax.plot(ws, ys, "o-", label=label)
            ax.set_xscale("log")
            ax.set_xlabel("width multiplier")
            ax.set_ylabel(r"$\lambda_{max}$ of the training Hessian")
            ax.set_title(f"{_title(workload, setup)}: sharpness at the end of training")
            ax.legend(fontsize=8)
            written.append(_save(fig, out / f"lambda_max_vs_width_{_stem(workload, setup)}.png"))
        moments = [(m, _curves(runs, m)) for m in MOMENTS]
        moments = [(m, c) for m, c in moments if c]
        if moments:
            fig = Figure(figsize=(3.2 * len(moments), 3.4), layout="constrained")
            for i, (name, curves) in enumerate(moments, 1):
                ax = fig.add_subplot(1, len(moments), i)
                for label, (ws, ys) in sorted(curves.items(), key=_base_first):
                    ax.plot(ws, ys, "o-", label=label)
                ax.set_xscale("log")
                ax.set_yscale(
                    "symlog" if any(y <= 0 for _, ys in curves.values() for y in ys) else "log"
                )
                ax.set_xlabel("width multiplier")
                ax.set_title(rf"tr$(H^{name[-1]})/n$")
            ax.legend(fontsize=8)
            fig.suptitle(f"{_title(workload, setup)}: Hessian moments at the end of training")
            stem = _stem(workload, setup)
            written.append(_save(fig, out / f"hessian_moments_vs_width_{stem}.png"))
    return written
