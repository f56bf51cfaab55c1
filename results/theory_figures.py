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


# ---------------------------------------------------------------- issue 22: the paper's theory
def _done(store: Store, workload: str) -> list[dict]:
    return [r for r in store.runs(workload=workload, status="done") if not is_late_phase(r)]


def _kind(run: dict) -> str:
    return "SAM" if run["optimizer"] == "sam" else "GD/SGD"


RELU_1D_WORKLOAD = "synthetic-relu-1d"


def relu_1d_figure(store: Store, out_dir: str | Path) -> Path:
    """Per width (columns): the learned functions of every seed, GD (blue) and SAM (red), over
    the data points (top), and the training loss on all points vs step (bottom, log scale).
    From the ``function_1d`` measure and the ``train/loss`` metric of done runs."""
    runs = [r for r in _done(store, RELU_1D_WORKLOAD) if store.measures(r["id"], "function_1d")]
    if not runs:
        raise ValueError(f"no done {RELU_1D_WORKLOAD} runs with a stored function in {store.path}")
    widths = sorted({r["width"] for r in runs})
    fig, axes = plt.subplots(2, len(widths), figsize=(3.6 * len(widths), 6.4), squeeze=False)
    colors = {"GD/SGD": "tab:blue", "SAM": "tab:red"}
    for j, width in enumerate(widths):
        top, bottom = axes[0, j], axes[1, j]
        for r in sorted((r for r in runs if r["width"] == width), key=lambda r: r["seed"]):
            d = store.measures(r["id"], "function_1d")[0]["details"]
            kind = _kind(r)
            first = r["seed"] == min(x["seed"] for x in runs if x["width"] == width)
            label = f"{kind} (rho {r['rho']:g})" if kind == "SAM" else kind
            top.plot(d["x"], d["y"], color=colors[kind], lw=1.2, alpha=0.8,
                     label=label if first else None)  # fmt: skip
            curve = store.metrics(r["id"], "train/loss")
            bottom.semilogy([c["step"] for c in curve], [c["value"] for c in curve],
                            color=colors[kind], lw=1, alpha=0.8)  # fmt: skip
        top.scatter(d["data_x"], d["data_y"], color="orange", zorder=3, s=18, label="data")
        top.set_title(f"{round(width)} neurons")
        top.set_xlabel("x")
        bottom.set_xlabel("step")
        if j == 0:
            top.set_ylabel("f(x)")
            bottom.set_ylabel("training loss (all 12 points)")
            top.legend(fontsize=7)
    fig.suptitle("One-hidden-layer ReLU nets, mini-batches of 6: GD vs SAM (every seed)")
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "figures" / "relu_1d.png")


def linear_stability_rows(store: Store, workload: str = "mnist-mlp") -> list[dict[str, Any]]:
    """Done squared-loss runs at a constant LR with a stored ``lambda_max``: one row per run
    with the LR, its 2/lr limit, lambda_max and the moments tr(H^k)/n."""
    rows = []
    for r in _done(store, workload):
        wc = r["config"]["run"]["workload_config"]
        if wc.get("loss") != "mse" or wc.get("lr_schedule") != "constant":
            continue
        measures = {m["name"]: m["value"] for m in store.measures(r["id"])}
        if "lambda_max" not in measures:
            continue
        lr = float(wc["learning_rate"])
        rows.append({
            "id": r["id"], "optimizer": _kind(r), "rho": r["rho"], "seed": r["seed"],
            "width": r["width"], "params": r["n_params"], "lr": lr, "limit": 2 / lr,
            "lambda_max": measures["lambda_max"],
            "moments": {int(k.split("_")[1]): v for k, v in measures.items()
                        if k.startswith("moment_")},
        })  # fmt: skip
    return rows


def linear_stability_figure(store: Store, out_dir: str | Path) -> Path:
    """Left: lambda_max of each run's final model against the 2/lr linear-stability limit.
    Right: tr(H^k)/n vs k (log scale), SGD vs SAM. Also writes the numbers as a table."""
    rows = linear_stability_rows(store)
    if not rows:
        raise ValueError(f"no done squared-loss mnist-mlp runs with lambda_max in {store.path}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    kinds = sorted({r["optimizer"] for r in rows})
    colors = {"GD/SGD": "tab:blue", "SAM": "tab:red"}
    for i, kind in enumerate(kinds):
        vals = [r["lambda_max"] for r in rows if r["optimizer"] == kind]
        ax1.bar(i, statistics.fmean(vals), color=colors[kind], alpha=0.7)
        ax1.scatter([i] * len(vals), vals, color="k", s=12, zorder=3)
        for r in (r for r in rows if r["optimizer"] == kind):
            ks = sorted(r["moments"])
            ax2.semilogy(ks, [abs(r["moments"][k]) for k in ks], "o-", color=colors[kind],
                         label=kind if r["seed"] == min(x["seed"] for x in rows
                                                        if x["optimizer"] == kind) else None)  # fmt: skip
    for limit in sorted({r["limit"] for r in rows}):
        ax1.axhline(limit, ls="--", color="gray")
        ax1.text(len(kinds) - 0.5, limit, f"2/lr = {limit:g}", va="bottom", ha="right")
    ax1.set_xticks(range(len(kinds)), kinds)
    ax1.set_ylabel("lambda_max of the training loss")
    ax1.set_title(
        f"sharpness at the end (width {rows[0]['width']:g}x, {rows[0]['params']:,} params)"
    )
    ax2.set_xlabel("k")
    ax2.set_ylabel("|tr(H^k)| / n")
    ax2.set_title("Hessian moments")
    ax2.legend()
    fig.tight_layout()
    lines = ["| optimizer | rho | seed | lr | 2/lr | lambda_max | "
             + " | ".join(f"tr(H^{k})/n" for k in range(1, 5)) + " |",
             "|---|---:|---:|---:|---:|---:|" + "---:|" * 4]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["optimizer"], r["seed"])):
        moments = " | ".join(f"{r['moments'].get(k, math.nan):.4g}" for k in range(1, 5))
        lines.append(f"| {r['optimizer']} | {r['rho']:g} | {r['seed']} | {r['lr']:g} | "
                     f"{r['limit']:g} | {r['lambda_max']:.4g} | {moments} |")  # fmt: skip
    _write_text(Path(out_dir) / "tables" / "linear_stability.md", "\n".join(lines) + "\n")
    return _save(fig, Path(out_dir) / "figures" / "linear_stability.png")


MATRIX_WORKLOAD = "synthetic-matrix-factorization"
FIT_FLOOR = 1e-9  # matrix factorization: the rate is fitted on training losses above this


def matrix_factorization_figure(store: Store, out_dir: str | Path) -> tuple[Path, Path]:
    """Training loss (evaluated each epoch, log scale) vs epoch per rank k, SGD solid and SAM
    dashed; the table holds the fitted slope of log loss per epoch over the second half."""
    runs = _done(store, MATRIX_WORKLOAD)
    if not runs:
        raise ValueError(f"no done {MATRIX_WORKLOAD} runs in {store.path}")
    ranks = sorted({r["width"] for r in runs})
    colors = plt.cm.viridis(np.linspace(0, 0.8, len(ranks)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[tuple[float, str], list[dict]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: (r["width"], r["optimizer"], r["seed"])):
        groups[(r["width"], _kind(r))].append(r)
    lines = ["| rank k | params | optimizer | rho | seeds | final train loss | "
             "slope of log loss / epoch (losses > 1e-9) |", "|---:|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for (rank, kind), group in sorted(groups.items()):
        slopes, finals = [], []
        for i, r in enumerate(group):
            curve = store.metrics(r["id"], "train/loss")
            epochs = [c["epoch"] for c in curve]
            values = [c["value"] for c in curve]
            # the rate before float32's floor (~1e-12 here) or a plateau takes over
            above = [(e, v) for e, v in zip(epochs, values) if v > FIT_FLOOR]
            slopes.append(fit_log_linear([e for e, _ in above], [v for _, v in above])[0])
            finals.append(values[-1])
            ax.semilogy(epochs, values, ls="--" if kind == "SAM" else "-",
                        color=colors[ranks.index(rank)],
                        label=f"k={round(rank)} {kind}" if i == 0 else None)  # fmt: skip
        lines.append(f"| {round(rank)} | {group[0]['n_params']} | {kind} | {group[0]['rho']:g} | "
                     f"{len(group)} | {statistics.fmean(finals):.3g} | "
                     f"{statistics.fmean(slopes):.4g} |")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("matrix factorization y = A x, A 10x6: SGD (solid) vs SAM (dashed)")
    ax.legend(fontsize=8)
    table = _write_text(
        Path(out_dir) / "tables" / "matrix_factorization.md", "\n".join(lines) + "\n"
    )
    return _save(fig, Path(out_dir) / "figures" / "matrix_factorization.png"), table


ALLEN_ZHU_WORKLOAD = "synthetic-allen-zhu"


def allen_zhu_rows(store: Store) -> list[dict[str, Any]]:
    """Per (width, optimizer): the (lr, rho) with the best mean validation MSE over seeds (at
    each run's best validation epoch), and its test MSE mean and std over seeds."""
    cells: dict[tuple[float, str], dict[tuple[float, float], list[dict]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in _done(store, ALLEN_ZHU_WORKLOAD):
        s, wc = r["summary"] or {}, r["config"]["run"]["workload_config"]
        if s.get("best/val_mse") is None:
            continue
        cells[(r["width"], _kind(r))][(float(wc["learning_rate"]), r["rho"])].append(s)
    rows = []
    for (width, kind), settings in sorted(cells.items()):
        (lr, rho), best = min(
            settings.items(), key=lambda kv: statistics.fmean(s["best/val_mse"] for s in kv[1])
        )
        tests = [s["best/test_mse"] for s in best]
        rows.append({
            "width": width, "optimizer": kind, "lr": lr, "rho": rho, "seeds": len(tests),
            "params": best[0]["n_params"], "test": statistics.fmean(tests),
            "std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        })  # fmt: skip
    return rows


def allen_zhu_figure(store: Store, out_dir: str | Path) -> Path:
    """Test MSE vs hidden units m, GD vs SAM, each at its best (lr, rho) on validation."""
    rows = allen_zhu_rows(store)
    if not rows:
        raise ValueError(f"no done {ALLEN_ZHU_WORKLOAD} runs in {store.path}")
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, color in (("GD/SGD", "tab:blue"), ("SAM", "tab:red")):
        sel = [r for r in rows if r["optimizer"] == kind]
        if sel:
            ax.errorbar([r["width"] * 100 for r in sel], [r["test"] for r in sel],
                        yerr=[r["std"] for r in sel], marker="o", color=color, label=kind,
                        capsize=3)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("hidden units m (first layer trained, second fixed)")
    ax.set_ylabel("test MSE (best lr, rho on validation)")
    ax.set_title("Allen-Zhu et al. two-layer regression")
    ax.legend()
    lines = ["| m | optimizer | lr | rho | seeds | test MSE |", "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {round(r['width'] * 100)} | {r['optimizer']} | {r['lr']:g} | "
                     f"{r['rho']:g} | {r['seeds']} | {r['test']:.4g} ± {r['std']:.2g} |")  # fmt: skip
    _write_text(Path(out_dir) / "tables" / "allen_zhu.md", "\n".join(lines) + "\n")
    return _save(fig, Path(out_dir) / "figures" / "allen_zhu.png")


def interpolation_figure(
    store: Store, out_dir: str | Path, run_a: str, run_b: str
) -> tuple[Path, Path]:
    """Train and test loss along theta(alpha) = (1 - alpha) theta_A + alpha theta_B, from the
    ``interp/<run_b>`` measure of ``run_a``; figure and table."""
    found = store.measures(run_a, f"interp/{run_b}")
    if not found:
        raise ValueError(f"no interpolation between {run_a} and {run_b} in {store.path}")
    d = found[0]["details"]
    opt_a, opt_b = d.get("optimizers", ["A", "B"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(d["alpha"], d["train_loss"], "o-", label="train")
    ax.plot(d["alpha"], d["test_loss"], "s-", label="test")
    ax.axvline(0, color="gray", lw=0.5)
    ax.axvline(1, color="gray", lw=0.5)
    ax.set_xlabel(f"alpha (0 = {opt_a} run {run_a[:8]}, 1 = {opt_b} run {run_b[:8]})")
    ax.set_ylabel("loss")
    ax.set_title(f"linear interpolation; barrier {found[0]['value']:.3g}")
    ax.legend()
    lines = ["| alpha | train loss | test loss |", "|---:|---:|---:|"]
    lines += [f"| {a:.3g} | {tr:.4g} | {te:.4g} |"
              for a, tr, te in zip(d["alpha"], d["train_loss"], d["test_loss"])]  # fmt: skip
    name = f"interpolation_{run_a[:8]}_{run_b[:8]}"
    table = _write_text(Path(out_dir) / "tables" / f"{name}.md", "\n".join(lines) + "\n")
    return _save(fig, Path(out_dir) / "figures" / f"{name}.png"), table


def interpolation_figures(store: Store, out_dir: str | Path) -> list[Path]:
    """Every stored interpolation (measures named ``interp/<run_b>``): figure and table each."""
    out: list[Path] = []
    for m in store.measures():
        if m["name"].startswith("interp/"):
            out += interpolation_figure(store, out_dir, m["run_id"], m["name"][len("interp/") :])
    if not out:
        raise ValueError(f"no stored interpolations in {store.path}")
    return out


def paper_theory_figures(
    store: Store, out_dir: str | Path, workload: str | None = None
) -> list[Path]:
    """Every issue-22 figure whose runs are in the store (``workload``: only that workload's);
    for runners/report.py's theory section."""
    makers: list[tuple[str | None, Any]] = [
        (RELU_1D_WORKLOAD, relu_1d_figure),
        ("mnist-mlp", linear_stability_figure),
        (MATRIX_WORKLOAD, matrix_factorization_figure),
        (ALLEN_ZHU_WORKLOAD, allen_zhu_figure),
        (None, interpolation_figures),  # any workload
    ]
    written: list[Path] = []
    for name, make in makers:
        if workload is not None and name is not None and name != workload:
            continue
        try:
            out = make(store, out_dir)
        except ValueError:
            continue  # none of its runs in this store
        written += list(out) if isinstance(out, (list, tuple)) else [out]
    return written
