"""Figures from the store alone (issue 9), PNG and PDF under ``<results>/figures/``:

- ``gain_vs_params``: the paper's Fig. 1 layout, one panel per workload: SAM's gain over the
  base optimizer against the parameter count (log axis), 95% CI band over seeds, the paper's
  points overlaid (squares, dashed) only for runs of the paper's exact setup, zero line.
- ``curves_<workload>``: training curves per width, base vs SAM at the chosen rho: training
  loss (first pass) and the validation metric against optimizer steps, mean over seeds (thin
  lines: single seeds).
- ``rho_vs_width``: the rho chosen on validation per width, the paper's best rho overlaid.

Matplotlib's object API (``Figure``, no pyplot): no global backend state, Agg for PNG.
"""

from __future__ import annotations

import io
import math
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from results.analysis import Experiment, experiments, optimizer_label
from results.io import atomic_write
from results.paper_numbers import paper_at
from results.store import Store

__all__ = [
    "gain_vs_params",
    "training_curves",
    "rho_vs_width",
    "save_figure",
    "write_figures",
    "TRAIN_LOSS_KEYS",
]

FORMATS = ("png", "pdf")
TRAIN_LOSS_KEYS = ("train/loss_first_pass", "train/loss")
"""the training-loss key of the runner's own loop, else the one a library loop logs"""
_OURS = {"color": "tab:blue", "marker": "o", "label": "ours"}
_PAPER = {"color": "tab:red", "marker": "s", "linestyle": "--", "label": "paper", "alpha": 0.8}
_OPT_COLORS = {"base": "tab:gray", "sam": "tab:orange"}


# No creation date in the PDFs (and no software version in either format): a figure redrawn
# from the same store is the same bytes, so regenerating a committed report changes nothing.
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}


def save_figure(fig: Figure, folder: str | Path, stem: str) -> list[Path]:
    """``<folder>/<stem>.png`` and ``.pdf``, each rendered in memory and replaced atomically."""
    paths = []
    for fmt in FORMATS:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata=_METADATA[fmt])
        paths.append(atomic_write(Path(folder) / f"{stem}.{fmt}", buf.getvalue()))
    return paths


def _grid(n: int, width: float = 3.6, height: float = 3.0) -> tuple[Figure, list]:
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _title(e: Experiment) -> str:
    return e.workload + f" ({e.protocol})" + (f"\n{e.label}" if e.label else "")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def gain_vs_params(exps: list[Experiment]) -> Figure:
    """The paper's Fig. 1: gain vs parameters, one panel per experiment."""
    fig, axes = _grid(len(exps))
    for ax, e in zip(axes, exps, strict=True):
        rows = [r for r in e.rows if r.params and not math.isnan(r.gain[0])]
        x = [r.params for r in rows]
        y = [r.gain[0] for r in rows]
        half = [0.0 if math.isnan(r.gain_ci95) else r.gain_ci95 for r in rows]
        ax.plot(x, y, **_OURS)
        ax.fill_between(
            x,
            [a - h for a, h in zip(y, half, strict=True)],
            [a + h for a, h in zip(y, half, strict=True)],
            color=_OURS["color"],
            alpha=0.2,
            linewidth=0,
        )
        ref = e.reference  # the paper's numbers only for runs of the paper's exact setup
        paper = ref.result if ref is not None else None
        if paper is not None:
            ours_params = {r.width: r.params for r in e.rows}
            points = []
            for i, w in enumerate(paper.widths):
                p = paper.params[i] if paper.params else ours_params.get(w)
                if p is not None and paper.gain[i] is not None:
                    err = paper.gain_err[i] if paper.gain_err else None
                    points.append((p, paper.gain[i], err or 0.0))
            if points:
                ax.errorbar(
                    [p for p, _, _ in points],
                    [g for _, g, _ in points],
                    yerr=[err for _, _, err in points] if paper.gain_err else None,
                    **_PAPER,
                )
        log_x = _all_positive(ax, "x")  # before axhline, whose x data are axes fractions
        ax.axhline(0.0, color="black", linewidth=0.8)
        if log_x:  # an experiment without a finite gain has nothing to place on a log axis
            ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # labelled decades only: no overlap
        ax.set_title(_title(e), fontsize=9)
        ax.set_xlabel("parameters")
        unit = e.unit
        ax.set_ylabel(f"SAM gain ({unit})" if unit else "SAM gain")
        ax.legend(fontsize=7)
    fig.suptitle(
        "SAM gain over the base optimizer vs parameters (band: 95% CI over seeds; "
        "test at each panel's protocol)"
    )
    return fig


def _curve(store: Store, run_id: str, key: str) -> dict[int, float]:
    # SQLite stores a NaN as NULL: a diverged step reads back as None
    return {
        m["step"]: math.nan if m["value"] is None else m["value"]
        for m in store.metrics(run_id, key)
    }


def _train_loss_key(store: Store, run_ids: list[str]) -> str | None:
    for key in TRAIN_LOSS_KEYS:
        if any(store.metrics(rid, key) for rid in run_ids):
            return key
    return None


def training_curves(store: Store, e: Experiment) -> Figure:
    """Rows: training loss, validation metric; columns: widths; lines: base vs SAM."""
    ids = [rid for r in e.rows for rid in r.base_ids + r.sam_ids]
    loss_key = _train_loss_key(store, ids)
    keys = [k for k in (loss_key, f"val/{e.rows[0].target}") if k]
    fig = Figure(figsize=(3.2 * len(e.rows), 2.6 * len(keys)), layout="constrained")
    axes = fig.subplots(len(keys), len(e.rows), squeeze=False)
    for col, r in enumerate(e.rows):
        for row, key in enumerate(keys):
            ax = axes[row][col]
            for opt, run_ids in (("base", r.base_ids), ("sam", r.sam_ids)):
                curves = [c for c in (_curve(store, rid, key) for rid in run_ids) if c]
                color = _OPT_COLORS[opt]
                for c in curves:
                    ax.plot(list(c), list(c.values()), color=color, alpha=0.25, linewidth=0.8)
                common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
                if common:
                    mean = [sum(c[s] for c in curves) / len(curves) for s in common]
                    name = (
                        optimizer_label(e.base_optimizer) if opt == "base" else f"SAM rho={r.rho:g}"
                    )
                    ax.plot(common, mean, color=color, label=name)
            if loss_key and key == loss_key and _all_positive(ax):
                ax.set_yscale("log")
            ax.set_title(f"{r.width:g}x" if row == 0 else "", fontsize=9)
            ax.set_xlabel("step" if row == len(keys) - 1 else "")
            ax.set_ylabel(key if col == 0 else "")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle(f"{_title(e)}: base vs SAM (chosen rho) per width", fontsize=10)
    return fig


def _all_positive(ax: Axes, axis: str = "y") -> bool:
    """A log axis only for data it can show: matplotlib raises on draw when no plotted value is
    > 0 (an empty panel, a zero loss, a rho of 0 in an ablation's rows)."""
    get = (lambda line: line.get_xdata()) if axis == "x" else (lambda line: line.get_ydata())
    ys = [float(y) for line in ax.get_lines() for y in get(line)]
    finite = [y for y in ys if math.isfinite(y)]
    return bool(finite) and min(finite) > 0


def rho_vs_width(exps: list[Experiment]) -> Figure:
    """The rho chosen on validation per width (the paper: best rho grows with width)."""
    fig, axes = _grid(len(exps))
    for ax, e in zip(axes, exps, strict=True):
        rows = [r for r in e.rows if r.rho is not None]
        ax.plot([r.width for r in rows], [r.rho for r in rows], **_OURS)
        paper = e.reference.result if e.reference is not None else None
        if paper is not None and paper.best_rho:
            ax.plot(
                list(paper.widths), [paper_at(paper, w, "best_rho") for w in paper.widths], **_PAPER
            )
        ax.set_xscale("log", base=2)
        if _all_positive(ax):
            ax.set_yscale("log")
        ax.set_title(_title(e), fontsize=9)
        ax.set_xlabel("width multiplier")
        ax.set_ylabel("rho chosen on validation")
        ax.legend(fontsize=7)
    fig.suptitle("Chosen rho vs width")
    return fig


def write_figures(store: Store, results_dir: str | Path, workload: str | None = None) -> str:
    """Every figure under ``<results_dir>/figures/``; returns a list of what was written."""
    folder = Path(results_dir) / "figures"
    names = sorted({r["workload"] for r in store.runs()} if workload is None else {workload})
    exps = [e for name in names for e in experiments(store, name)]
    if not exps:
        return "(no finished runs: no figures)\n"
    suffix = "" if workload is None else f"_{workload}"
    jobs: list[tuple[str, Callable[[], Figure]]] = [
        (f"gain_vs_params{suffix}", lambda: gain_vs_params(exps)),
    ]
    with_rho = [e for e in exps if any(r.rho is not None for r in e.rows)]
    if with_rho:
        jobs.append((f"rho_vs_width{suffix}", lambda: rho_vs_width(with_rho)))
    seen: dict[str, int] = defaultdict(int)
    for e in exps:
        stem = "curves_" + _slug(e.workload + (f"_{e.label}" if e.label else ""))
        seen[stem] += 1
        stem += f"_{seen[stem]}" if seen[stem] > 1 else ""
        jobs.append((stem, lambda e=e: training_curves(store, e)))
    written = []
    for stem, make in jobs:
        written += save_figure(make(), folder, stem)
    return "".join(f"wrote {p}\n" for p in written)
