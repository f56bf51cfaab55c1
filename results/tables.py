"""Tables from the store alone: per workload, base vs SAM at each width.

For each width, SAM's rho is chosen by the mean over seeds of the validation metric at each
run's best epoch (never by test); the reported numbers are test metrics at those epochs.
Gain = improvement of SAM over the base optimizer in the metric's direction, mean +- std over
seeds (paired by seed where both exist).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from results.store import Store

__all__ = ["width_rows", "workload_table", "all_tables", "is_late_phase"]


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def is_late_phase(run: dict[str, Any]) -> bool:
    """A SAM run that used the ascent for only part of training (``sam_start``/``sam_end``)."""
    cfg = (run.get("config") or {}).get("run", {})
    return (cfg.get("sam_start", 0.0), cfg.get("sam_end", 1.0)) != (0.0, 1.0)


def width_rows(store: Store, workload: str) -> list[dict[str, Any]]:
    """One dict per width: params, base and SAM test metric, chosen rho, gain, seeds."""
    # late-phase SAM runs (SAM for part of training) are compared in results/late_phase.py
    runs = [r for r in store.runs(workload=workload, status="done") if not is_late_phase(r)]
    by_width: dict[float, list[dict]] = defaultdict(list)
    for r in runs:
        by_width[r["width"]].append(r)
    rows = []
    for width in sorted(by_width):
        group = by_width[width]
        target = group[0]["summary"]["target"]
        mode = group[0]["summary"]["target_mode"]
        sign = 1.0 if mode == "max" else -1.0  # gain = sign * (sam - base)
        val_key, test_key = f"best/val_{target}", f"best/test_{target}"
        base = {r["seed"]: r["summary"][test_key] for r in group if r["optimizer"] != "sam"}
        sam_by_rho: dict[float, list[dict]] = defaultdict(list)
        for r in group:
            if r["optimizer"] == "sam":
                sam_by_rho[r["rho"]].append(r)
        best_rho, sam = None, {}
        if sam_by_rho:
            best_rho = (max if mode == "max" else min)(
                sam_by_rho,
                key=lambda rho: statistics.fmean(r["summary"][val_key] for r in sam_by_rho[rho]),
            )
            sam = {r["seed"]: r["summary"][test_key] for r in sam_by_rho[best_rho]}
        paired = sorted(set(base) & set(sam))
        gains = [sign * (sam[s] - base[s]) for s in paired]
        if not gains and base and sam:
            gains = [sign * (statistics.fmean(sam.values()) - statistics.fmean(base.values()))]
        rows.append(
            {
                "width": width,
                "params": group[0]["n_params"],
                "target": target,
                "mode": mode,
                "base": _mean_std(list(base.values())),
                "sam": _mean_std(list(sam.values())),
                "rho": best_rho,
                "gain": _mean_std(gains),
                "seeds": len(paired) or max(len(base), len(sam)),
            }
        )
    return rows


def _fmt(ms: tuple[float, float]) -> str:
    m, s = ms
    if m != m:
        return "-"
    return f"{m:.4g} ± {s:.2g}"


def workload_table(store: Store, workload: str) -> str:
    """Markdown: width | params | base | SAM | rho | gain | seeds."""
    rows = width_rows(store, workload)
    if not rows:
        return f"### {workload}\n\n(no finished runs)\n"
    t = rows[0]["target"]
    lines = [
        f"### {workload} (test {t} at the best validation epoch; gain > 0 = SAM better)",
        "",
        f"| width | params | base test {t} | SAM test {t} | rho (val) | gain | seeds |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rho = "-" if r["rho"] is None else f"{r['rho']:g}"
        lines.append(
            f"| {r['width']:g}x | {r['params']:,} | {_fmt(r['base'])} | {_fmt(r['sam'])} "
            f"| {rho} | {_fmt(r['gain'])} | {r['seeds']} |"
        )
    return "\n".join(lines) + "\n"


def all_tables(store: Store) -> str:
    names = sorted({r["workload"] for r in store.runs()})
    return "\n".join(workload_table(store, n) for n in names) if names else "(the store is empty)\n"
