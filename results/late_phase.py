"""Late-phase SAM table from the store alone: base, SAM throughout, and SAM switched on late
("SAM Efficiently Selects Flatter Minima Late in Training", Zhou et al., ICLR 2025).

Per workload, setup, width and schedule (base | SAM over [start, end) of training), at each
rho: the test metric at the best validation epoch (mean +- std over seeds), the compute cost
as forward-backward passes relative to the base run, the share of SAM's gain recovered, and
lambda_max at the end when a ``lambda_max`` measure is stored for the run. Setups are the main
tables' (results/analysis.py ``setup_key``): runs of different presets or overrides are never
pooled, and each schedule is compared with the base runs of its own setup.

    python runners/report.py --sections late_phase --workload mnist-mlp   # the report's section
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from results.analysis import setup_key, setup_labels
from results.store import Store

__all__ = ["late_phase_rows", "late_phase_table"]


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _lambda_max(store: Store, run_id: str) -> float | None:
    """The run's last stored ``lambda_max`` measure, if the store has measures at all."""
    if not hasattr(store, "measures"):  # the measures table lands with samcore.sharpness
        return None
    rows = store.measures(run_id, "lambda_max")
    if not rows:
        return None
    last = rows[-1]
    return float(last["value"] if isinstance(last, dict) else last)


def late_phase_rows(store: Store, workload: str) -> list[dict[str, Any]]:
    """One row per (setup, width, rho, schedule), base first, then SAM by start fraction;
    ``setup`` labels the setup ('' when the workload has one)."""
    groups: dict[tuple[str, float, float, float, float], list[dict]] = defaultdict(list)
    setups: dict[str, dict[str, Any]] = {}
    for r in store.runs(workload=workload, status="done"):
        key, setups[key] = setup_key(r)
        run_cfg = r["config"].get("run") or {}
        sam = r["optimizer"] == "sam"
        start = run_cfg.get("sam_start", 0.0) if sam else math.nan
        end = run_cfg.get("sam_end", 1.0) if sam else math.nan
        groups[(key, r["width"], r["rho"], start, end)].append(r)
    labels = dict(zip(setups, setup_labels(list(setups.values())), strict=True))
    base = {(k[0], k[1]): v for k, v in groups.items() if math.isnan(k[3])}
    rows = []
    for (key, width, rho, start, end), runs in groups.items():
        s = runs[0]["summary"]
        target, mode = s["target"], s["target_mode"]
        test = _mean_std([r["summary"][f"best/test_{target}"] for r in runs])
        passes = statistics.fmean(r["summary"]["forward_backward_passes"] for r in runs)
        base_runs = base.get((key, width), [])
        base_passes = (
            statistics.fmean(r["summary"]["forward_backward_passes"] for r in base_runs)
            if base_runs
            else math.nan
        )
        lams = [_lambda_max(store, r["id"]) for r in runs]
        lams = [v for v in lams if v is not None]
        rows.append(
            {
                "setup": labels[key],
                "_setup_key": key,
                "width": width,
                "rho": rho,
                "schedule": "base" if math.isnan(start) else f"SAM [{start:g}, {end:g})",
                "start": start,
                "target": target,
                "mode": mode,
                "test": test,
                "relative_cost": passes / base_passes,
                "lambda_max": _mean_std(lams) if lams else None,
                "seeds": len(runs),
            }
        )
    # share of full SAM's gain over base that each schedule recovers (same setup, width, rho)
    by_key = {(r["_setup_key"], r["width"], r["rho"], r["schedule"]): r for r in rows}
    base_rows = {(r["_setup_key"], r["width"]): r for r in rows if r["schedule"] == "base"}
    for r in rows:
        b = base_rows.get((r["_setup_key"], r["width"]))
        full = by_key.get((r["_setup_key"], r["width"], r["rho"], "SAM [0, 1)"))
        gain = full["test"][0] - b["test"][0] if (b and full) else math.nan
        sign = 1.0 if r["mode"] == "max" else -1.0
        useful = b is not None and r["schedule"] != "base" and sign * gain > 0
        # undefined where full SAM did not beat the base optimizer (no gain to recover)
        r["gain_recovered"] = (r["test"][0] - b["test"][0]) / gain if useful else None
    rows.sort(key=lambda r: (r["setup"], r["width"], r["schedule"] != "base", r["rho"], r["start"]))
    for r in rows:
        del r["_setup_key"]
    return rows


def late_phase_table(store: Store, workload: str) -> str:
    """Markdown, one table per setup of the workload."""
    rows = late_phase_rows(store, workload)
    if not rows:
        return f"### {workload}: late-phase SAM\n\n(no finished runs)\n"
    parts = []
    for setup in dict.fromkeys(r["setup"] for r in rows):
        part = [r for r in rows if r["setup"] == setup]
        t = part[0]["target"]
        lines = [
            f"### {workload}: late-phase SAM (test {t} at the best validation epoch)"
            + (f" [{setup}]" if setup else ""),
            "",
            f"| width | schedule | rho | test {t} | cost (passes / base) | "
            "share of SAM's gain | lambda_max (end) | seeds |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in part:
            m, s = r["test"]
            share = "-" if r["gain_recovered"] is None else f"{r['gain_recovered']:.2f}"
            lam = "-" if r["lambda_max"] is None else f"{r['lambda_max'][0]:.4g}"
            rho = "-" if r["schedule"] == "base" else f"{r['rho']:g}"
            lines.append(
                f"| {r['width']:g}x | {r['schedule']} | {rho} | {m:.4g} ± {s:.2g} | "
                f"{r['relative_cost']:.2f} | {share} | {lam} | {r['seeds']} |"
            )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
