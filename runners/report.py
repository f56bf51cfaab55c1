"""Regenerate the report from the results store alone: tables, figures, findings, optional
TensorBoard.

python runners/report.py [--results DIR] [--workload W] [--sections tables,figures] [--tensorboard]

The report is the list of sections below, run in order; each reads the store and writes
under ``<results>/`` (atomically), and returns the text printed here. The ``findings``
section prints, per workload and setup, the trend test's slope, interval, p and verdict, and
writes them as sentences into the generated block of ``<results>/README.md`` (the only place
a results README states findings; the text around the block is kept as it is).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from results.analysis import (
    ABLATION_FIELDS,
    AXIS_DEFAULTS,
    ablation_experiments,
    experiments,
    longer_base_experiments,
    setup_key,
    weight_decay_experiments,
)
from results.figures import write_figures
from results.io import DEFAULT_RESULTS, atomic_write
from results.late_phase import late_phase_table
from results.regime import regime_sentence
from results.render import with_generated_block
from results.sharpness_report import sharpness_figures, sharpness_tables
from results.smoothness_figure import smoothness_pl_figure
from results.store import Store, StoreError
from results.tables import findings, is_late_phase, summary_experiments, write_tables
from results.theory_figures import (
    linear_convergence_figure,
    paper_theory_figures,
    patch_heatmap,
)

Section = Callable[[Store, Path, str | None], str]
"""(store, results folder, workload or None for all) -> text for the terminal"""


_FINDINGS_INTRO = (
    "Findings, one per workload and setup, from the trend test of results/trend.py on the "
    "seed-level paired gains (SAM minus base, positive = SAM better): 'rises'/'falls' only "
    "when the one-sided permutation p of that direction is below 0.025 (a two-sided test at "
    "0.05), else 'no trend detected' with the smallest slope these seeds could have detected; "
    "'SAM better'/'SAM worse' at the largest width only when its 95% interval excludes 0. The "
    "paper's numbers are compared only for runs of the paper's exact setup (preset, protocol, "
    "config). The tables and figures are in tables/ and figures/."
)


def write_findings(store: Store, results_dir: Path, workload: str | None = None) -> str:
    """The verdict per workload and setup, printed; with every workload (no ``--workload``)
    also written into the generated block of ``<results>/README.md``."""
    names = sorted({r["workload"] for r in store.runs(workload=workload)})
    pairs = summary_experiments([e for name in names for e in experiments(store, name)])
    if not pairs:
        return "(no finished runs: no findings)\n"
    lines = [
        f"{line} {regime_sentence(store, e)}".rstrip()
        for line, (e, _) in zip(findings(pairs), pairs)
    ]
    text = "\n".join(lines) + "\n"
    if workload is None:
        readme = results_dir / "README.md"
        old = readme.read_text() if readme.exists() else ""
        atomic_write(readme, with_generated_block(old, f"{_FINDINGS_INTRO}\n\n{text}"))
        text += f"wrote the findings block of {readme}\n"
    return text


def write_tables_and_exclusions(
    store: Store, results_dir: Path, workload: str | None = None
) -> str:
    """results/tables.py's tables, then one line per group of done runs (one workload, one
    setup) that no table shows, and why: runs never vanish from the report silently."""
    return write_tables(store, results_dir, workload) + "".join(
        f"{line}\n" for line in excluded_run_groups(store, workload)
    )


def excluded_run_groups(store: Store, workload: str | None = None) -> list[str]:
    """A line per workload with done runs but no width table (so not in the summary or Fig. 1
    either), and per setup whose done runs are in no table at all (width, ablation, axis,
    weight decay, longer base) nor in the late-phase section; each with the reason its runs
    show."""
    done = [r for r in store.runs(workload=workload, status="done") if not is_late_phase(r)]
    by_workload: dict[str, list[dict]] = {}
    for r in done:
        by_workload.setdefault(r["workload"], []).append(r)
    lines, shown = [], set()
    tables = []
    for name, runs in sorted(by_workload.items()):
        width_tables = experiments(store, name)
        if not width_tables:
            lines.append(
                f"no width table for {name} ({len(runs)} done runs; not in the summary or "
                f"figures): {_why_excluded(runs)}"
            )
        tables += width_tables
    for field_name in (*ABLATION_FIELDS, *AXIS_DEFAULTS):
        tables += ablation_experiments(store, field_name)
    tables += weight_decay_experiments(store) + longer_base_experiments(store)
    for exp in tables:
        for row in exp.rows:
            shown.update(row.base_ids, row.sam_ids)
    groups: dict[str, list[dict]] = {}
    for r in done:
        groups.setdefault(setup_key(r)[0], []).append(r)
    for runs in groups.values():
        if shown.isdisjoint(r["id"] for r in runs):
            lines.append(
                f"not in any table: {len(runs)} done runs of {runs[0]['workload']}, "
                f"{_why_excluded(runs)}"
            )
    return lines


def _why_excluded(runs: list[dict]) -> str:
    wl = ((runs[0].get("config") or {}).get("run") or {}).get("workload_config") or {}
    off = [f"{k}={wl[k]}" for k in ABLATION_FIELDS if wl.get(k)]
    if off:
        return (
            f"its runs have {', '.join(off)}: ablation values (the width tables take runs at "
            "the clean value 0 only; a workload whose default is not 0 never reaches them)"
        )
    optimizers = sorted({r["optimizer"] for r in runs})
    return f"only {'/'.join(optimizers)} runs in this setup: a table compares base with SAM"


def write_sharpness(store: Store, results_dir: Path, workload: str | None = None) -> str:
    """results/sharpness_report.py over the stored measures (all workloads: Kendall's tau is
    taken across them); nothing is written when no run has been measured."""
    if not store.measures():
        return "(no sharpness measures stored; runners/sharpness.py measures runs)\n"
    text = sharpness_tables(store)
    atomic_write(results_dir / "tables" / "sharpness.md", text)
    written = sharpness_figures(store, results_dir / "figures")
    return text + "".join(f"wrote {p}\n" for p in written)


def write_late_phase(store: Store, results_dir: Path, workload: str | None = None) -> str:
    """results/late_phase.py for every workload with late-phase SAM runs."""
    names = sorted({r["workload"] for r in store.runs(workload=workload) if is_late_phase(r)})
    if not names:
        return "(no late-phase SAM runs stored; run.py --sam-start makes them)\n"
    texts = [late_phase_table(store, name) for name in names]
    for name, text in zip(names, texts, strict=True):
        atomic_write(results_dir / "tables" / f"late_phase_{name}.md", text)
    return "\n".join(texts)


def write_theory(store: Store, results_dir: Path, workload: str | None = None) -> str:
    """results/theory_figures.py over the theory runs (runners/theory.py), where there are any."""
    written = []
    if workload in (None, "synthetic-patch-cnn"):
        try:
            written.append(patch_heatmap(store, results_dir))
        except ValueError:
            pass  # no patch-CNN runs in this store
    if workload in (None, "synthetic-regression"):
        try:
            written += linear_convergence_figure(store, results_dir, fit_from=0.5)
        except ValueError:
            pass  # no full-batch noiseless-teacher runs in this store
    written += paper_theory_figures(store, results_dir, workload)  # issue 22's experiments
    if not written:
        return (
            "(no theory runs stored; python runners/theory.py patch-heatmap | linear-convergence)\n"
        )
    return "".join(f"wrote {p}\n" for p in written)


def write_smoothness(store: Store, results_dir: Path, workload: str | None = None) -> str:
    """results/smoothness_figure.py (Fig. 21) for each workload with runs measured along
    training (``smoothness_radius`` > 0: runners/theory.py smoothness-pl)."""
    written: list[Path] = []
    for name in sorted({r["workload"] for r in store.runs(workload=workload)}):
        try:
            written += smoothness_pl_figure(store, results_dir, name)
        except ValueError:
            pass  # no measured runs of this workload
    if not written:
        return "(no runs with smoothness_radius > 0; python runners/theory.py smoothness-pl)\n"
    return "".join(f"wrote {p}\n" for p in written)


def write_tensorboard(store: Store, results_dir: Path, workload: str | None = None) -> str:
    """One TensorBoard run per stored run, ``<results>/tensorboard/<run name>/``, rebuilt from
    its metric rows (every key a scalar against the optimizer step) and its config as text."""
    from torch.utils.tensorboard import SummaryWriter  # torch only here, and only on request

    root = results_dir / "tensorboard"
    runs = store.runs(workload=workload)
    for run in runs:
        folder = root / run["name"].replace("/", "_")
        shutil.rmtree(folder, ignore_errors=True)  # regenerated whole: no duplicated points
        with SummaryWriter(log_dir=str(folder)) as writer:
            for m in store.metrics(run["id"]):
                value = math.nan if m["value"] is None else m["value"]  # SQLite keeps NaN as NULL
                writer.add_scalar(m["key"], value, m["step"])
            writer.add_text("config", _code_block(run["config"]), 0)
            writer.add_text("summary", _code_block(run.get("summary") or {}), 0)
            writer.add_text("status", f"{run['status']} {run.get('error') or ''}".strip(), 0)
    return (
        f"wrote TensorBoard logs of {len(runs)} runs under {root} (tensorboard --logdir {root})\n"
    )


def _code_block(obj: object) -> str:
    # TensorBoard renders text as Markdown: indent four spaces for a code block
    return "\n".join(
        "    " + line for line in json.dumps(obj, indent=2, sort_keys=True).splitlines()
    )


# The report, in order. Another section is one line here: name -> function(store, dir, workload).
SECTIONS: dict[str, Section] = {
    "tables": write_tables_and_exclusions,  # results/tables.py; runs in no table said why
    "findings": write_findings,  # trend verdicts per workload and setup -> <results>/README.md
    "figures": write_figures,  # results/figures.py: Fig. 1 layout, training curves, rho vs width
    "sharpness": write_sharpness,  # results/sharpness_report.py: measures vs width, Kendall tau
    "late_phase": write_late_phase,  # results/late_phase.py: SAM switched on late
    "smoothness": write_smoothness,  # results/smoothness_figure.py: Fig. 21 along training
    "theory": write_theory,  # results/theory_figures.py: patch-CNN heatmaps, linear convergence
}
OPTIONAL_SECTIONS: dict[str, Section] = {"tensorboard": write_tensorboard}


def _fail(message: str) -> int:
    print(f"report.py: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="report.py", description=__doc__.splitlines()[0])
    p.add_argument(
        "--results",
        default=str(DEFAULT_RESULTS),
        help=f"results folder (default {DEFAULT_RESULTS}/)",
    )
    p.add_argument("--workload", default=None, help="only this workload")
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files per run under <results>/tensorboard/",
    )
    args = p.parse_args(argv)
    if not args.results.strip():  # Path("") is the current directory
        return _fail("--results must name a folder, got an empty value")
    results_dir = Path(args.results)
    db = results_dir / "runs.sqlite"
    names = [s for s in args.sections.split(",") if s]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        return _fail(f"unknown section(s) {unknown}; expected a subset of {list(SECTIONS)}")
    if not db.exists():
        return _fail(f"no results store at {db}; run runners/run.py or runners/sweep.py first")
    try:
        store = Store(db)
    except StoreError as exc:
        return _fail(str(exc))
    if args.workload is not None and not store.runs(workload=args.workload):
        stored = sorted({r["workload"] for r in store.runs()})
        store.close()
        return _fail(f"no runs of workload {args.workload!r} in {db}; stored: {stored}")
    sections = {n: SECTIONS[n] for n in names}
    if args.tensorboard:
        sections.update(OPTIONAL_SECTIONS)
    rc = 0
    for name, section in sections.items():
        try:
            text = section(store, results_dir, args.workload)
        except OSError as exc:  # disk full, permissions: what was written before stays whole
            print(f"report.py: error: {name} not written: {exc}", file=sys.stderr)
            rc = 1
            continue
        print(f"## {name}\n\n{text}")
    store.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
