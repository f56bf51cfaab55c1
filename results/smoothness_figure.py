"""The smoothness / PL figure (Shin et al., UAI 2025, Fig. 21; issue 22) from the store alone.

Runs trained with ``smoothness_radius`` > 0 store, at every evaluation, ``train/smoothness``
(||grad L(w + delta) - grad L(w)|| / ||delta||, delta along the gradient) and ``train/pl_ratio``
(||grad L||^2 / (2 L), L* = 0) as metric rows (samcore.sharpness.smoothness_pl). Per width: both
against the epoch, base optimizer vs SAM, mean over seeds; the values at the last evaluation go
to a Markdown table. Runs of different setups are never pooled: one figure per setup
(``setup_key`` of results/analysis.py, the ablation fields and width/seed/optimizer aside).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from results.analysis import optimizer_label, setup_key
from results.figures import save_figure
from results.io import atomic_write
from results.stats import mean_std
from results.store import Store

__all__ = ["SMOOTHNESS_KEYS", "smoothness_curves", "smoothness_pl_figure"]

SMOOTHNESS_KEYS = {"train/smoothness": "local smoothness", "train/pl_ratio": "PL ratio"}

Curves = dict[tuple[float, str], dict[str, dict[int, list[float]]]]
"""(width, optimizer) -> metric key -> epoch -> values over seeds"""


def _measured(run: dict[str, Any]) -> bool:
    wc = ((run.get("config") or {}).get("run") or {}).get("workload_config") or {}
    return bool(wc.get("smoothness_radius"))


def smoothness_curves(store: Store, workload: str) -> list[tuple[dict[str, Any], Curves]]:
    """Per setup of ``workload`` with measured runs: its fields and the curves by width and
    optimizer (SAM at any rho is labelled with its rho)."""
    setups: dict[str, tuple[dict[str, Any], Curves]] = {}
    for run in store.runs(workload=workload):
        if run["status"] != "done" or not _measured(run):
            continue
        key, fields = setup_key(run)
        _, curves = setups.setdefault(key, (fields, defaultdict(lambda: defaultdict(dict))))
        label = f"SAM rho={run['rho']:g}" if run["optimizer"] == "sam" else run["optimizer"]
        for name in SMOOTHNESS_KEYS:
            for m in store.metrics(run["id"], name):
                value = math.nan if m["value"] is None else m["value"]
                curves[(run["width"], label)][name].setdefault(m["epoch"], []).append(value)
    return list(setups.values())


def smoothness_pl_figure(store: Store, results_dir: str | Path, workload: str) -> list[Path]:
    """``<results>/figures/smoothness_pl_<workload>[_<i>].png/.pdf`` (one per setup) and
    ``<results>/tables/smoothness_pl_<workload>.md``; ValueError without measured runs."""
    setups = smoothness_curves(store, workload)
    if not setups:
        raise ValueError(f"no {workload} runs with smoothness_radius > 0 in the store")
    written: list[Path] = []
    lines = [
        f"# Smoothness and PL ratio along training: {workload} (Fig. 21)",
        "",
        "Last evaluation, mean ± std over seeds; delta = smoothness_radius along the gradient, "
        "L* = 0 (samcore.sharpness.smoothness_pl).",
        "",
    ]
    for i, (fields, curves) in enumerate(setups):
        widths = sorted({w for w, _ in curves})
        fig = Figure(figsize=(3.6 * len(widths), 5.6), layout="constrained")
        axes = fig.subplots(2, len(widths), squeeze=False)
        for col, width in enumerate(widths):
            for label in sorted({lab for w, lab in curves if w == width}):
                for row, (name, title) in enumerate(SMOOTHNESS_KEYS.items()):
                    by_epoch = curves[(width, label)][name]
                    epochs = sorted(by_epoch)
                    means = [mean_std(by_epoch[e])[0] for e in epochs]
                    ax = axes[row][col]
                    ax.plot(epochs, means, marker="o", ms=3, label=optimizer_label(label))
                    ax.set_yscale("log")
                    ax.set_title(f"{width:g}x: {title}", fontsize=9)
                    ax.set_xlabel("epoch")
            axes[0][col].legend(fontsize=7)
        fig.suptitle(f"{workload}: local smoothness and PL ratio", fontsize=10)
        stem = f"smoothness_pl_{workload}" + (f"_{i}" if i else "")
        written += save_figure(fig, Path(results_dir) / "figures", stem)
        setup = ", ".join(
            f"{k}={v}" for k, v in sorted(fields.items()) if k in ("preset", "smoothness_radius")
        )
        lines += [
            f"## {setup}",
            "",
            "| width | optimizer | epoch | smoothness | PL ratio |",
            "|---|---|---|---|---|",
        ]
        for (width, label), metrics in sorted(curves.items()):
            last = max(metrics["train/smoothness"], default=None)
            if last is None:
                continue
            cells = [
                "{:.4g} ± {:.2g}".format(*mean_std(metrics[k].get(last, [math.nan])))
                for k in SMOOTHNESS_KEYS
            ]
            lines.append(
                f"| {width:g}x | {optimizer_label(label)} | {last:g} | {' | '.join(cells)} |"
            )
        lines.append("")
    table = Path(results_dir) / "tables" / f"smoothness_pl_{workload}.md"
    written.append(atomic_write(table, "\n".join(lines)))
    return written
