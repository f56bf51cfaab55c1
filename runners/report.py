"""Print (and write) the per-workload tables regenerated from the store alone.

python runners/report.py [--results results] [--workload NAME]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from results.store import Store, StoreError
from results.tables import all_tables, workload_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="report.py", description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--workload", default=None, help="only this workload")
    args = p.parse_args(argv)
    db = Path(args.results) / "runs.sqlite"
    if not db.exists():
        print(
            f"report.py: error: no results store at {db}; run runners/run.py first", file=sys.stderr
        )
        return 2
    try:
        store = Store(db)
    except StoreError as exc:
        print(f"report.py: error: {exc}", file=sys.stderr)
        return 2
    text = workload_table(store, args.workload) if args.workload else all_tables(store)
    store.close()
    print(text)
    out = Path(args.results) / "tables"
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "summary.md.tmp"
        tmp.write_text(text)
        tmp.replace(out / ("summary.md" if not args.workload else f"{args.workload}.md"))
    except OSError as exc:
        print(f"report.py: warning: tables not written to {out}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
