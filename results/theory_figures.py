"""Figures of the theory experiments, from the store alone (no torch, no domains).

- ``patch_heatmap``: test error of the base optimizer and SAM over (signal strength, dimension)
  on the signal-noise patch data, side by side with their difference (Chen et al., NeurIPS
  2023). Runs are grouped by the fields stored in their workload config.
- ``linear_convergence_figure``: training loss vs iteration per width for GD and SAM on the
  noiseless teacher (full batch), and the fitted linear rate per width (Shin et al.).

Files are written atomically (a temporary file, then ``os.replace``), so a reader never sees a
half-written figure.
"""

from __future__ import annotations

import math
import os
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from results.store import Store  # noqa: E402
from results.tables import is_late_phase  # noqa: E402

__all__ = [
    "PATCH_WORKLOAD",
    "patch_grid",
    "patch_heatmap",
    "fit_log_linear",
    "linear_convergence_runs",
    "linear_convergence_rows",
    "linear_convergence_figure",
]

PATCH_WORKLOAD = "synthetic-patch-cnn"


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _final(store: Store, run_id: str, key: str) -> float:
    """The value of ``key`` at the run's last logged step (the trained solution)."""
    rows = store.metrics(run_id, key)
    return rows[-1]["value"] if rows else math.nan


# ---------------------------------------------------------------- signal-noise patches
def patch_grid(
    store: Store, *, width: float = 1.0, metric: str = "test/error"
) -> dict[str, dict[tuple[float, int], float]]:
    """{"base" | "sam": {(signal_strength, dim): mean over seeds of the final ``metric``}}.

    Done runs of the patch workload at ``width``; SAM's cells average every stored rho (the
    heatmap command runs one)."""
    cells: dict[str, dict[tuple[float, int], list[float]]] = {
        "base": defaultdict(list),
        "sam": defaultdict(list),
    }
    for r in store.runs(workload=PATCH_WORKLOAD, status="done"):
        if r["width"] != width or is_late_phase(r):
            continue
        wc = r["config"]["run"]["workload_config"]
        kind = "sam" if r["optimizer"] == "sam" else "base"
        cells[kind][(float(wc["signal_strength"]), int(wc["dim"]))].append(
            _final(store, r["id"], metric)
        )
    return {k: {cell: statistics.fmean(v) for cell, v in c.items()} for k, c in cells.items()}


def patch_heatmap(
    store: Store, out_dir: str | Path, *, width: float = 1.0, metric: str = "test/error"
) -> Path:
    """Three panels: base | SAM | base - SAM (> 0: SAM better); rows signal strength, columns
    dimension. Cells without a run are blank. Returns the figure's path."""
    grid = patch_grid(store, width=width, metric=metric)
    keys = set(grid["base"]) | set(grid["sam"])
    if not keys:
        raise ValueError(f"no done {PATCH_WORKLOAD} runs at width {width:g} in {store.path}")
    mus = sorted({k[0] for k in keys})
    dims = sorted({k[1] for k in keys})

    def matrix(values: dict[tuple[float, int], float]) -> np.ndarray:
        return np.array([[values.get((mu, d), np.nan) for d in dims] for mu in mus])

    base, sam = matrix(grid["base"]), matrix(grid["sam"])
    panels = [
        ("GD / SGD", base, "viridis"),
        ("SAM", sam, "viridis"),
        ("GD - SAM", base - sam, "RdBu"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    vmax_err = np.nanmax(np.concatenate([base.ravel(), sam.ravel()]))
    lim = np.nanmax(np.abs(base - sam)) if np.isfinite(base - sam).any() else 1.0
    for ax, (title, m, cmap) in zip(axes, panels):
        diff = cmap == "RdBu"
        im = ax.imshow(
            m,
            origin="lower",
            aspect="auto",
            cmap=cmap,
            vmin=-lim if diff else 0.0,
            vmax=lim if diff else vmax_err,
        )
        for i in range(len(mus)):
            for j in range(len(dims)):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(dims)), [str(d) for d in dims])
        ax.set_yticks(range(len(mus)), [f"{mu:g}" for mu in mus])
        ax.set_xlabel("dimension d")
        ax.set_ylabel("signal strength ||mu||")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    fig.suptitle(f"{PATCH_WORKLOAD}: final {metric} (width {width:g}x; right: > 0 = SAM better)")
    return _save(fig, Path(out_dir) / "figures" / f"patch_heatmap_w{width:g}.png")


# ---------------------------------------------------------------- linear convergence
def fit_log_linear(steps: list[float], losses: list[float]) -> tuple[float, float]:
    """Least-squares fit log(loss) = a + b * step over the positive losses: returns (b, a).
    A linear rate is loss_t ~ exp(a) * exp(b)^t, i.e. a contraction factor exp(b) per step."""
    pts = [(s, math.log(v)) for s, v in zip(steps, losses) if v > 0 and math.isfinite(v)]
    if len(pts) < 2:
        return math.nan, math.nan
    x, y = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
    b, a = np.polyfit(x, y, 1)
    return float(b), float(a)


def linear_convergence_runs(store: Store, workload: str = "synthetic-regression") -> list[dict]:
    """Done full-batch runs on a noiseless teacher (``noise_std`` 0, batch >= training set):
    the runs of the linear-convergence experiment, whoever started them."""
    out = []
    for r in store.runs(workload=workload, status="done"):
        wc = r["config"]["run"]["workload_config"]
        if wc.get("noise_std") == 0 and wc.get("batch_size", 0) >= wc.get("num_train", 1):
            out.append(r)
    return out


def linear_convergence_rows(
    store: Store, *, fit_from: float = 0.0, workload: str = "synthetic-regression"
) -> list[dict[str, Any]]:
    """One row per (width, optimizer): params, final training loss and the fitted slope of
    log training loss per iteration over steps >= ``fit_from`` x the run's length, mean over
    seeds. The loss is the first-pass (at w) batch loss, one logged value per full-batch step."""
    groups: dict[tuple[float, str], list[dict]] = defaultdict(list)
    for r in linear_convergence_runs(store, workload):
        groups[(r["width"], "sam" if r["optimizer"] == "sam" else "gd")].append(r)
    rows = []
    for (width, opt), runs in sorted(groups.items()):
        slopes, finals = [], []
        for r in runs:
            curve = store.metrics(r["id"], "train/loss_first_pass")
            steps = [c["step"] for c in curve]
            start = fit_from * (steps[-1] if steps else 0)
            sel = [(s, c["value"]) for s, c in zip(steps, curve) if s >= start]
            slopes.append(fit_log_linear([s for s, _ in sel], [v for _, v in sel])[0])
            finals.append(curve[-1]["value"] if curve else math.nan)
        rows.append(
            {
                "width": width,
                "optimizer": opt,
                "params": runs[0]["n_params"],
                "rho": runs[0]["rho"],
                "slope": statistics.fmean(slopes),
                "final_loss": statistics.fmean(finals),
                "seeds": len(runs),
            }
        )
    return rows


def linear_convergence_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| width | params | optimizer | rho | slope of log train loss / step | "
        "rate exp(slope) | final train loss | seeds |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['width']:g}x | {r['params']:,} | {r['optimizer']} | {r['rho']:g} | "
            f"{r['slope']:.4g} | {math.exp(r['slope']):.4f} | {r['final_loss']:.3g} | "
            f"{r['seeds']} |"
        )
    return "\n".join(lines) + "\n"


def linear_convergence_figure(
    store: Store, out_dir: str | Path, *, fit_from: float = 0.0
) -> tuple[Path, Path]:
    """log training loss vs iteration per width (GD solid, SAM dashed) and the slope table
    (``<out>/tables/linear_convergence.md``). Returns (figure, table) paths."""
    runs = linear_convergence_runs(store)
    if not runs:
        raise ValueError(f"no done full-batch noiseless-teacher runs in {store.path}")
    widths = sorted({r["width"] for r in runs})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in sorted(runs, key=lambda r: (r["width"], r["optimizer"], r["seed"])):
        if r["seed"] != min(x["seed"] for x in runs if x["width"] == r["width"]):
            continue  # one curve per (width, optimizer): the first seed
        curve = store.metrics(r["id"], "train/loss_first_pass")
        sam = r["optimizer"] == "sam"
        ax.semilogy(
            [c["step"] for c in curve],
            [c["value"] for c in curve],
            ls="--" if sam else "-",
            color=colors[widths.index(r["width"])],
            label=f"{r['width']:g}x {'SAM' if sam else 'GD'}",
        )
    ax.set_xlabel("iteration (full-batch step)")
    ax.set_ylabel("training loss (at w)")
    ax.set_title("noiseless teacher, full batch: GD (solid) vs SAM (dashed)")
    ax.legend(fontsize=7, ncol=2)
    fig_path = _save(fig, Path(out_dir) / "figures" / "linear_convergence.png")
    table = linear_convergence_table(linear_convergence_rows(store, fit_from=fit_from))
    return fig_path, _write_text(Path(out_dir) / "tables" / "linear_convergence.md", table)
