"""Tables from the store alone (issue 9): per workload, the cross-domain summary, and the
label-noise / sparsity ablations, each as Markdown, CSV and LaTeX under ``<results>/tables/``.

Per workload: width | params | base | SAM | rho | gain ± 95% CI | seeds | diverged | the
paper's numbers at that width. Base and SAM are test metrics at each run's best validation
epoch, mean ± std over seeds; rho is chosen on validation (results/analysis.py has the rules).
Summary: one row per workload (and setup): widths run, gain at the smallest and largest width,
Spearman of gain vs log(params), and the paper's gains at the same widths beside ours, with the
agreement in sign (per width) and in trend (sign of the two Spearman coefficients).
"""

from __future__ import annotations

from pathlib import Path

from results.analysis import (
    ABLATION_FIELDS,
    Experiment,
    ablation_experiments,
    experiments,
    is_late_phase,
    optimizer_label,
    paper_ablation,
    trend,
)
from results.paper_numbers import PAPER, PaperResult, metric_unit, paper_at
from results.render import Table, fmt_num, fmt_pm, write_table
from results.store import Store

__all__ = [
    "workload_table",
    "experiment_table",
    "summary_table",
    "ablation_table",
    "all_tables",
    "write_tables",
    "GAIN_NOTE",
    "is_late_phase",  # re-exported: results/theory_figures.py imports it from here
]

GAIN_NOTE = (
    "Test metric at each run's best validation epoch, mean ± std over seeds; gain > 0 = SAM "
    "better, ± = 95% CI (Student t over seeds paired with the base run); rho chosen per width "
    "on the validation metric (mean over seeds), never on test; paper numbers in our units."
)


def _width(w: float) -> str:
    return f"{w:g}x"


def _params(p: int | None) -> str:
    return "-" if p is None else f"{p:,}"


def _rho(rho: float | None, variant: str = "") -> str:
    return "-" if rho is None else f"{rho:g}" + (f" ({variant})" if variant else "")


def _metric_title(exp: Experiment) -> str:
    unit = metric_unit(exp.workload)
    return f"test {exp.rows[0].target}" + (f" ({unit})" if unit else "")


def experiment_table(
    exps: list[Experiment], title: str, ablation: str | None = None, with_workload: bool = False
) -> Table:
    """One table over several experiments (setups); a setup column appears when they differ;
    ``ablation`` adds that field's value column and takes the paper's ablation numbers."""
    with_setup = any(e.label for e in exps)
    has_paper = any(
        _paper_for(e, ablation, r.ablation_value) is not None for e in exps for r in e.rows
    )
    names = {e.base_optimizer for e in exps}
    base = optimizer_label(names.pop()) if len(names) == 1 else "base"
    columns = (
        (["workload"] if with_workload else [])
        + ["width"]
        + ([ablation] if ablation else [])
        + ["params", base, "SAM", "rho (val)", "gain ± 95% CI", "seeds", "diverged"]
        + (["paper base", "paper SAM", "paper gain", "paper rho"] if has_paper else [])
        + (["setup"] if with_setup else [])
    )
    table = Table(title, columns, notes=[GAIN_NOTE])
    for e in exps:
        for r in e.rows:
            paper = _paper_for(e, ablation, r.ablation_value)
            p = {k: paper_at(paper, r.width, k) for k in ("base", "sam", "gain", "best_rho")}
            cells = (
                ([e.workload] if with_workload else [])
                + [_width(r.width)]
                + ([fmt_num(r.ablation_value, "g")] if ablation else [])
                + [
                    _params(r.params),
                    fmt_pm(*r.base),
                    fmt_pm(*r.sam),
                    _rho(r.rho, r.sam_variant),
                    fmt_pm(r.gain[0], r.gain_ci95, ".3g", ".2g"),
                    str(r.seeds),
                    str(r.diverged),
                ]
                + (
                    [fmt_num(p[k]) for k in ("base", "sam", "gain", "best_rho")]
                    if has_paper
                    else []
                )
                + ([e.label or "-"] if with_setup else [])
            )
            table.rows.append(cells)
            table.records.append(
                {
                    "workload": e.workload,
                    "setup": e.label,
                    "width": r.width,
                    **({ablation: r.ablation_value} if ablation else {}),
                    "params": r.params,
                    "target": r.target,
                    "mode": r.mode,
                    "unit": metric_unit(e.workload),
                    "base_optimizer": e.base_optimizer,
                    "base_mean": r.base[0],
                    "base_std": r.base[1],
                    "sam_mean": r.sam[0],
                    "sam_std": r.sam[1],
                    "rho": r.rho,
                    "sam_variant": r.sam_variant,
                    "gain_mean": r.gain[0],
                    "gain_std": r.gain[1],
                    "gain_ci95": r.gain_ci95,
                    "seeds": r.seeds,
                    "diverged": r.diverged,
                    **{f"paper_{k}": v for k, v in p.items()},
                }
            )
    return table


def _paper_for(e: Experiment, ablation: str | None, value: float | None) -> PaperResult | None:
    if ablation is None:
        return PAPER.get(e.workload)
    if not value:  # the clean runs in an ablation table: the paper's main (clean) numbers
        return PAPER.get(e.workload)
    return paper_ablation(e.workload, ablation, value, e.config)


def workload_table(store: Store, workload: str) -> str:
    """Markdown table of one workload (every setup it was run with)."""
    exps = experiments(store, workload)
    if not exps:
        return f"### {workload}\n\n(no finished runs)\n"
    return experiment_table(exps, f"{workload}: {_metric_title(exps[0])}").to_markdown()


def summary_table(exps: list[Experiment]) -> Table:
    """One row per workload (and setup): our trend beside the paper's."""
    columns = [
        "workload",
        "domain",
        "widths",
        "gain (smallest)",
        "gain (largest)",
        "Spearman",
        "paper gain (smallest)",
        "paper gain (largest)",
        "paper Spearman",
        "sign agrees",
        "trend agrees",
    ]
    notes = [
        "Gain at our smallest and largest width (metric units as in each workload's table); "
        "Spearman = rank correlation of gain with log(params) over our widths (- with fewer "
        "than 3); paper columns: the paper's gains at the same widths; sign agrees = widths where "
        "our gain has the paper's sign / widths compared; trend agrees = the two Spearman "
        "coefficients have the same sign."
    ]
    table = Table(
        "Cross-domain summary: SAM gain vs width", columns, notes=notes, align="ll" + "r" * 9
    )
    for e in exps:
        t = trend(e)
        name = e.workload + (f" [{e.label}]" if e.label else "")
        agree = f"{t.sign_agree[0]}/{t.sign_agree[1]}" if t.sign_agree[1] else "-"
        table.rows.append(
            [
                name,
                e.domain,
                ", ".join(_width(w) for w in t.widths),
                fmt_num(t.gain_first, ".3g"),
                fmt_num(t.gain_last, ".3g"),
                fmt_num(t.spearman, ".2f"),
                fmt_num(t.paper_first, ".3g"),
                fmt_num(t.paper_last, ".3g"),
                fmt_num(t.paper_spearman, ".2f"),
                agree,
                {True: "yes", False: "no", None: "-"}[t.trend_agree],
            ]
        )
        table.records.append(
            {
                "workload": e.workload,
                "setup": e.label,
                "domain": e.domain,
                "widths": " ".join(f"{w:g}" for w in t.widths),
                "unit": metric_unit(e.workload),
                "gain_smallest": t.gain_first,
                "gain_largest": t.gain_last,
                "spearman": t.spearman,
                "paper_gain_smallest": t.paper_first,
                "paper_gain_largest": t.paper_last,
                "paper_spearman": t.paper_spearman,
                "sign_agree": t.sign_agree[0],
                "sign_compared": t.sign_agree[1],
                "trend_agree": t.trend_agree,
            }
        )
    return table


def ablation_table(store: Store, field_name: str) -> Table | None:
    """Rows by (workload, width, value of ``field_name``); None when no run has the ablation."""
    exps = ablation_experiments(store, field_name)
    if not exps:
        return None
    title = f"Ablation: {field_name} (test metric; units as in each workload's table)"
    return experiment_table(exps, title, ablation=field_name, with_workload=True)


def _workloads(store: Store, only: str | None) -> list[str]:
    names = sorted({r["workload"] for r in store.runs()})
    return [n for n in names if only is None or n == only]


def all_tables(store: Store) -> str:
    """Every workload's Markdown table (kept for callers of the first report version)."""
    names = _workloads(store, None)
    return "\n".join(workload_table(store, n) for n in names) if names else "(the store is empty)\n"


def write_tables(store: Store, results_dir: str | Path, workload: str | None = None) -> str:
    """Write every table under ``<results_dir>/tables/``; returns the Markdown to print
    (summary first, then each workload, then the ablations)."""
    folder = Path(results_dir) / "tables"
    names = _workloads(store, workload)
    if not names:
        return "(no runs in the store" + (f" for {workload})\n" if workload else ")\n")
    out: list[str] = []
    every: list[Experiment] = []
    per_workload: list[str] = []
    for name in names:
        exps = experiments(store, name)
        if not exps:
            per_workload.append(f"### {name}\n\n(no finished runs)\n")
            continue
        every += exps
        table = experiment_table(exps, f"{name}: {_metric_title(exps[0])}")
        write_table(table, folder, name)
        per_workload.append(table.to_markdown())
    summary = summary_table(every)
    write_table(summary, folder, "summary" if workload is None else f"summary_{workload}")
    out += [summary.to_markdown(), *per_workload]
    for field_name in ABLATION_FIELDS:
        table = ablation_table(store, field_name)
        if table is not None and workload is not None:
            keep = [i for i, r in enumerate(table.records) if r["workload"] == workload]
            table.rows = [table.rows[i] for i in keep]
            table.records = [table.records[i] for i in keep]
        if table is not None and table.rows:
            stem = f"ablation_{field_name}" + ("" if workload is None else f"_{workload}")
            write_table(table, folder, stem)
            out.append(table.to_markdown())
    return "\n".join(out)
