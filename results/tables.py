"""Tables from the store alone (issue 9), per workload, the cross-domain summary, and the
label-noise / sparsity ablations, each as Markdown, CSV and LaTeX under ``<results>/tables/``.

Per workload: width | params | base | SAM | rho | gain ± 95% CI | seeds | diverged | protocol |
the paper's numbers at that width, only when the setup is exactly the paper's (workload,
preset, protocol, config; results/paper_numbers.py), "-" otherwise. Base and SAM are test
metrics at the row's protocol (best-val: each run's best validation epoch; final: its last
epoch), mean ± std over seeds; rho is chosen on validation at the same epoch
(results/analysis.py has the rules). The label-noise table reports the final epoch and shows
the best-validation-epoch numbers beside it (PAPERS.md).

Summary: one row per workload and setup: results/trend.py's test on the seed-level paired
gains (slope of gain per decade of parameters with its bootstrap 95% CI, the one-sided
permutation p of the direction, the verdict, the smallest slope the seeds could detect), the
gain at the largest width with its 95% CI and whether that interval excludes 0, Spearman as a
column (never a verdict), and, for the paper's setup only, the paper's gains at our widths, its
slope and the widths where our gain has its sign.
"""

from __future__ import annotations

import math
from pathlib import Path

from results.analysis import (
    ABLATION_FIELDS,
    AXIS_DEFAULTS,
    Experiment,
    Trend,
    WidthRow,
    ablation_experiments,
    changed_from_preset,
    experiments,
    is_late_phase,
    longer_base_experiments,
    optimizer_label,
    reference_at,
    trend,
    weight_decay_experiments,
)
from results.paper_numbers import AXIS_KINDS, paper_at
from results.regime import regime_table
from results.render import Table, fmt_num, fmt_pm, write_table
from results.store import Store
from results.trend import verdict_sentence

__all__ = [
    "workload_table",
    "experiment_table",
    "summary_table",
    "ablation_table",
    "weight_decay_table",
    "longer_base_table",
    "all_tables",
    "write_tables",
    "summary_experiments",
    "findings",
    "GAIN_NOTE",
    "is_late_phase",  # re-exported: results/theory_figures.py imports it from here
]

GAIN_NOTE = (
    "Test metric at the row's protocol (best-val: each run's best validation epoch; final: its "
    "last epoch), mean ± std over seeds; gain > 0 = SAM better, ± = 95% CI (Student t over "
    "seeds paired with the base run); rho chosen per width on the validation metric at the same "
    "epoch (mean over seeds), never on test; paper numbers in our units, only for runs of the "
    "paper's exact setup (preset, protocol, config), '-' otherwise."
)
_PAPER_KEYS = ("base", "sam", "gain", "best_rho")


def _width(w: float) -> str:
    return f"{w:g}x"


def _params(p: int | None) -> str:
    return "-" if p is None else f"{p:,}"


def _rho(rho: float | None, variant: str = "") -> str:
    return "-" if rho is None else f"{rho:g}" + (f" ({variant})" if variant else "")


def _metric_title(exp: Experiment) -> str:
    unit = exp.unit
    return f"test {exp.rows[0].target}" + (f" ({unit})" if unit else "")


def _gain_cell(r: WidthRow | None) -> str:
    return "-" if r is None else fmt_pm(r.gain[0], r.gain_ci95, ".3g", ".2g")


def experiment_table(
    exps: list[Experiment],
    title: str,
    ablation: str | None = None,
    with_workload: bool = False,
    per_rho: bool = False,
) -> Table:
    """One table over several experiments (setups); a setup column appears when they differ;
    ``ablation`` adds that field's value column. Where rows carry the other protocol's cell
    (label noise), its base, SAM and gain follow; rows' ``choices`` (each optimizer's weight
    decay, epochs) get a column each; ``per_rho`` adds SAM's test metric at every rho run.
    For a depth or alpha ablation the paper's numbers are looked up by that value."""
    with_setup = any(e.label for e in exps)
    refs = {(id(e), id(r)): reference_at(e, r) for e in exps for r in e.rows}
    has_paper = any(ref is not None for ref in refs.values())
    alt_protocols = sorted({r.alt.protocol for e in exps for r in e.rows if r.alt})
    alt = alt_protocols[0] if len(alt_protocols) == 1 else None
    names = {e.base_optimizer for e in exps}
    base = optimizer_label(names.pop()) if len(names) == 1 else "base"
    choices = list(dict.fromkeys(k for e in exps for r in e.rows for k in r.choices))
    rhos = sorted({rho for e in exps for r in e.rows for rho in r.sam_by_rho}) if per_rho else []
    columns = (
        (["workload"] if with_workload else [])
        + ["width"]
        + ([ablation] if ablation else [])
        + choices
        + ["params", base, "SAM", "rho (val)", "gain ± 95% CI", "seeds", "diverged", "protocol"]
        + [f"SAM rho={rho:g}" for rho in rhos]
        + ([f"{base} ({alt})", f"SAM ({alt})", f"gain ({alt})"] if alt else [])
        + (
            ["paper base", "paper SAM", "paper gain", "paper rho", "paper source"]
            if has_paper
            else []
        )
        + (["setup"] if with_setup else [])
    )
    table = Table(title, columns, notes=[GAIN_NOTE])
    for e in exps:
        for r in e.rows:
            ref = refs[(id(e), id(r))]
            axis = r.ablation_value if ablation in AXIS_KINDS else r.width
            p = {k: paper_at(ref.result if ref else None, axis, k) for k in _PAPER_KEYS}
            cells = (
                ([e.workload] if with_workload else [])
                + [_width(r.width)]
                + ([fmt_num(r.ablation_value, "g")] if ablation else [])
                + [fmt_num(r.choices.get(k), "g") for k in choices]
                + [
                    _params(r.params),
                    fmt_pm(*r.base),
                    fmt_pm(*r.sam),
                    _rho(r.rho, r.sam_variant),
                    _gain_cell(r),
                    str(r.seeds),
                    str(r.diverged),
                    r.protocol,
                ]
                + [fmt_pm(*r.sam_by_rho[rho]) if rho in r.sam_by_rho else "-" for rho in rhos]
                + (
                    [
                        fmt_pm(*r.alt.base) if r.alt else "-",
                        fmt_pm(*r.alt.sam) if r.alt else "-",
                        _gain_cell(r.alt),
                    ]
                    if alt
                    else []
                )
                + (
                    [fmt_num(p[k]) for k in _PAPER_KEYS] + [ref.source if ref else "-"]
                    if has_paper
                    else []
                )
                + ([e.label or "-"] if with_setup else [])
            )
            table.rows.append(cells)
            record = {
                "workload": e.workload,
                "setup": e.label,
                "width": r.width,
                **({ablation: r.ablation_value} if ablation else {}),
                "params": r.params,
                "target": r.target,
                "mode": r.mode,
                "unit": e.unit,
                "protocol": r.protocol,
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
                **{k: r.choices.get(k) for k in choices},
                **{f"sam_rho_{rho:g}_mean": r.sam_by_rho.get(rho, (None,))[0] for rho in rhos},
            }
            if r.alt is not None:
                record.update(
                    {
                        "alt_protocol": r.alt.protocol,
                        "alt_base_mean": r.alt.base[0],
                        "alt_sam_mean": r.alt.sam[0],
                        "alt_rho": r.alt.rho,
                        "alt_gain_mean": r.alt.gain[0],
                        "alt_gain_ci95": r.alt.gain_ci95,
                    }
                )
            record.update({f"paper_{k}": v for k, v in p.items()})
            record["paper_source"] = ref.source if ref else None
            table.records.append(record)
    return table


def workload_table(store: Store, workload: str) -> str:
    """Markdown table of one workload (every setup it was run with)."""
    exps = experiments(store, workload)
    if not exps:
        return f"### {workload}\n\n(no finished runs)\n"
    return experiment_table(exps, f"{workload}: {_metric_title(exps[0])}").to_markdown()


def _signed(x: float) -> str:
    return fmt_num(x, "+.3g")


def _interval(lo: float, hi: float) -> str:
    return "-" if math.isnan(lo) else f"[{_signed(lo)}, {_signed(hi)}]"


def _p_direction(t: Trend) -> tuple[float, str]:
    """The one-sided p of the direction reported: the verdict's, else the smaller one."""
    test = t.test
    if math.isnan(test.p_rises):
        return math.nan, ""
    if test.verdict == "falls" or (test.verdict != "rises" and test.p_falls < test.p_rises):
        return test.p_falls, "falls"
    return test.p_rises, "rises"


def summary_experiments(exps: list[Experiment]) -> list[tuple[Experiment, Trend]]:
    """Each experiment with its trend test (computed once for the table and the prose)."""
    return [(e, trend(e)) for e in exps]


def summary_table(exps: list[Experiment] | list[tuple[Experiment, Trend]]) -> Table:
    """One row per workload and setup: the trend test, the gain at the largest width, and the
    paper's numbers for the paper's setup only."""
    pairs = [x if isinstance(x, tuple) else (x, trend(x)) for x in exps]
    columns = [
        "workload",
        "domain",
        "protocol",
        "widths",
        "gains",
        "slope / decade [95% CI]",
        "p (one-sided)",
        "verdict",
        "min. detectable slope",
        "gain at largest [95% CI]",
        "at largest",
        "Spearman",
        "paper gains",
        "paper slope / decade",
        "sign as paper",
    ]
    notes = [
        "Trend test on the seed-level paired gains (results/trend.py): slope = least-squares "
        "gain per decade of parameters, 95% CI from a bootstrap over seeds within each width; "
        "p = one-sided permutation p of the direction named (gains permuted across widths); "
        "verdict 'rises'/'falls' only when that p < 0.025 (two-sided test at 0.05), else 'no "
        "trend detected'; min. detectable slope = the smallest |slope| these seeds detect "
        "(power 0.8) from the within-width seed variance. At largest = the 95% t-interval of "
        "the gain at the largest width excludes 0 ('SAM better'/'SAM worse') or not. Spearman "
        "of mean gain with log(params), a column only. Paper columns only for runs of the "
        "paper's exact setup (else '-'): its gains at our widths, its slope over its widths, "
        "and the widths where our gain has its sign / widths compared. Units as in each "
        "workload's table."
    ]
    table = Table(
        "Cross-domain summary: SAM gain vs width", columns, notes=notes, align="lll" + "r" * 12
    )
    for e, t in pairs:
        test = t.test
        name = e.workload + (f" [{e.label}]" if e.label else "")
        p, direction = _p_direction(t)
        paper = t.reference is not None
        table.rows.append(
            [
                name,
                e.domain,
                e.protocol,
                ", ".join(_width(w) for w in t.widths),
                str(test.n_seeds),
                f"{_signed(test.slope)} {_interval(*test.slope_ci95)}"
                if not math.isnan(test.slope)
                else "-",
                f"{fmt_num(p, '.2g')} ({direction})" if direction else "-",
                test.verdict,
                fmt_num(test.min_detectable_slope, ".3g"),
                f"{_signed(test.largest_gain)} {_interval(*test.largest_gain_ci95)}",
                test.at_largest,
                fmt_num(test.spearman, ".2f"),
                " ".join(fmt_num(g, "g") for g in t.paper_gains) if paper else "-",
                _signed(t.paper_slope) if t.paper_slope is not None else "-",
                f"{t.sign_agree[0]}/{t.sign_agree[1]}" if paper and t.sign_agree[1] else "-",
            ]
        )
        table.records.append(
            {
                "workload": e.workload,
                "setup": e.label,
                "domain": e.domain,
                "protocol": e.protocol,
                "widths": " ".join(f"{w:g}" for w in t.widths),
                "unit": e.unit,
                "n_gains": test.n_seeds,
                "slope": test.slope,
                "slope_ci95_lo": test.slope_ci95[0],
                "slope_ci95_hi": test.slope_ci95[1],
                "p_rises": test.p_rises,
                "p_falls": test.p_falls,
                "verdict": test.verdict,
                "min_detectable_slope": test.min_detectable_slope,
                "gain_largest": test.largest_gain,
                "gain_largest_ci95_lo": test.largest_gain_ci95[0],
                "gain_largest_ci95_hi": test.largest_gain_ci95[1],
                "at_largest": test.at_largest,
                "spearman": test.spearman,
                "paper_source": t.reference.source if paper else None,
                "paper_gains": " ".join(fmt_num(g, "g") for g in t.paper_gains) if paper else None,
                "paper_slope": t.paper_slope,
                "sign_agree": t.sign_agree[0] if paper else None,
                "sign_compared": t.sign_agree[1] if paper else None,
            }
        )
    return table


def findings(pairs: list[tuple[Experiment, Trend]]) -> list[str]:
    """One generated Markdown bullet per workload and setup: what was compared and
    results/trend.py's verdict sentence (with the paper's slope for the paper's setup only)."""
    lines = []
    for e, t in pairs:
        unit = e.unit
        setup = f"preset {e.config.get('preset', '?')}" + (f", {e.label}" if e.label else "")
        what = (
            f"**{e.workload}** ({setup}; protocol {e.protocol}; widths "
            f"{', '.join(_width(w) for w in t.widths)}; {t.test.n_seeds} paired gains)"
        )
        sentence = verdict_sentence(t.test, unit, t.paper_slope)
        if t.reference is not None:
            sentence += (
                f" Paper ({t.reference.source}): gains "
                + " ".join(fmt_num(g, "g") for g in t.paper_gains)
                + f" at these widths, slope {_signed(t.paper_slope or math.nan)} per decade; our "
                f"gain has its sign at {t.sign_agree[0]} of {t.sign_agree[1]} widths."
            )
        elif t.context is not None and t.context_slope is not None:
            changed = changed_from_preset(e.rows) or ()
            differs = f"preset {e.config.get('preset', '?')}" + (
                f", changed {', '.join(changed)}" if changed else ""
            )
            sentence += (
                f" No paper reference for this setup ({differs}); for scale, the paper's "
                f"{t.context.source} slope at its full recipe is "
                f"{_signed(t.context_slope)} per decade, which these seeds "
                + (
                    "cannot test yet (too few widths)."
                    if t.test.verdict == "too few widths"
                    else "could not resolve (no within-width variance)."
                    if math.isnan(t.test.min_detectable_slope)
                    else "had the power to detect."
                    if abs(t.context_slope) >= t.test.min_detectable_slope
                    else "did not have the power to detect."
                )
            )
        else:
            sentence += " No paper reference for this setup."
        lines.append(f"- {what}: {sentence}")
    return lines


_ABLATION_TITLES = {
    "depth": "Ablation: gain vs depth (App. E; mnist-mlp hidden layers, ResNet BasicBlocks per "
    "stage)",
    "alpha": "Ablation: linearized regime, gain vs output scale alpha (App. E; centred VGG-11, "
    "MSE / alpha^2)",
}


def ablation_table(store: Store, field_name: str) -> Table | None:
    """Rows by (workload, width, value of ``field_name``); None when no run has the ablation.
    The alpha table also shows SAM at every rho (the paper reports SAM at rho 0.001)."""
    exps = ablation_experiments(store, field_name)
    if not exps:
        return None
    title = _ABLATION_TITLES.get(
        field_name, f"Ablation: {field_name} (test metric; units as in each workload's table)"
    )
    return experiment_table(
        exps, title, ablation=field_name, with_workload=True, per_rho=field_name == "alpha"
    )


def weight_decay_table(store: Store) -> Table | None:
    """Fig. 18: base and SAM each at the weight decay chosen on validation (SAM jointly with
    rho), per width; None without a setup run at two or more weight decays."""
    exps = weight_decay_experiments(store)
    if not exps:
        return None
    title = "Weight-decay grid: gain with each optimizer at its best weight decay (Fig. 18)"
    return experiment_table(exps, title, with_workload=True)


def longer_base_table(store: Store) -> Table | None:
    """App. E: the base optimizer trained for twice SAM's epochs (compute-matched) vs SAM;
    None without such pairs."""
    exps = longer_base_experiments(store)
    if not exps:
        return None
    title = (
        "Compute-matched: base optimizer for 2x SAM's epochs vs SAM (App. E, SGD 400 vs SAM 200)"
    )
    return experiment_table(exps, title, with_workload=True)


def compute_table(store: Store, workload: str | None = None) -> Table:
    """Where the machine time went, per workload: the finished runs and their stored training
    wall time (a seed-ensemble member counts its share), base and SAM apart. Machine-specific:
    the hardware column says where it was measured."""
    table = Table(
        "Compute: stored wall time of the finished runs, per workload",
        [
            "workload",
            "runs",
            "base runs",
            "SAM runs",
            "total (h)",
            "median run (s)",
            "slowest run (s)",
            "hardware",
        ],
        align="lrrrrrrl",
        notes=[
            "Wall time of each run's training loop as the run stored it (evaluations included, "
            "process start and data loading not); runs that shared the machine with other jobs "
            "took longer than on a quiet one."
        ],
    )
    for name in _workloads(store, workload):
        runs = [r for r in store.runs(workload=name, status="done") if r.get("wall_time_s")]
        if not runs:
            continue
        times = sorted(float(r["wall_time_s"]) for r in runs)
        sam = sum(r["optimizer"] == "sam" for r in runs)
        hardware = sorted({str(r.get("hardware") or "?") for r in runs})
        record = {
            "workload": name,
            "runs": len(runs),
            "base_runs": len(runs) - sam,
            "sam_runs": sam,
            "total_h": sum(times) / 3600,
            "median_run_s": times[len(times) // 2],
            "slowest_run_s": times[-1],
            "hardware": "; ".join(hardware),
        }
        table.records.append(record)
        table.rows.append(
            [
                name,
                str(len(runs)),
                str(len(runs) - sam),
                str(sam),
                f"{record['total_h']:.2f}",
                f"{record['median_run_s']:.0f}",
                f"{record['slowest_run_s']:.0f}",
                record["hardware"],
            ]
        )
    return table


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
    regime = regime_table(store, every)
    if regime.rows:
        write_table(regime, folder, "regime" if workload is None else f"regime_{workload}")
        out.append(regime.to_markdown())
    compute = compute_table(store, workload)
    if compute.rows:
        write_table(compute, folder, "compute" if workload is None else f"compute_{workload}")
        out.append(compute.to_markdown())
    extra = {"weight_decay_grid": weight_decay_table, "base_2x_epochs": longer_base_table}
    for field_name in (*ABLATION_FIELDS, *AXIS_DEFAULTS, *extra):
        if field_name in extra:
            table = extra[field_name](store)
        else:
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
