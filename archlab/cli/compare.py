"""``archlab compare``: the architecture bake-off on bundled real data.

Rows are kinds of data -- images (MNIST-5k), time series (monthly CO2, yearly sunspots), text
(CMUdict spelling -> phonemes), a table (breast_cancer) -- and columns are architectures: MLP,
CNN, RNN, LSTM, GRU, Transformer, Boosting (gradient-boosted trees), each where it applies, beside
classical baselines (an RBF SVM, SARIMA, AR(9), naive forecasts, the majority class). Every cell
is trained by the real trainer, validated on a split carved from its training data during
training, and scored on the test split once, at the end.

By default every cell does the fixed work of the default plan (its steps and evaluation sizes):
the same seed gives the same table on any machine and under any load, with the same torch build
and thread count; a busy machine only takes longer, and the run says how long against the plan's
estimate (about 5 minutes on a quiet 2-core CPU). --plan long does more work for quality;
--budget gives every cell the same training time instead (time-boxed: results then depend on the
machine, and the table says so). --seeds 3 runs every cell three times and reports means with 95%
intervals; a row's winner is only named when its interval clears the runner-up's; with --ensemble
each cell's seeds are also scored as one model, their predictions averaged.

The matrix is printed; result.json, report.md and a self-contained report.html (training and
validation curves, misclassified digits, forecasts, pronunciations) go to the run directory.
No network.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from archlab.errors import ConfigError, check


HELP = "the architecture bake-off on bundled real data (images, series, text, tables)"


def register(sub) -> None:
    from archlab.compare import ARCHS, PLANS, ROWS

    rows = ", ".join(f"{r.key} ({r.dataset})" for r in ROWS)
    plans = "; ".join(f"{name}: {p.description}" for name, p in PLANS.items())
    p = sub.add_parser("compare", help=HELP, description=__doc__)
    p.add_argument("--plan", default="default", metavar="NAME|X",
                   help=f"how much work each cell does (fixed steps): {plans}; or a multiplier of the default "
                        "steps, e.g. 0.1 or 3 (default: default)")
    p.add_argument("--budget", metavar="DURATION",
                   help="time-boxed instead of fixed work: every cell gets an equal share of this wall-clock "
                        "budget, e.g. 30m or 90s; its steps then depend on the machine's speed")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="run every cell N times (seeds SEED..SEED+N-1) and report means with 95%% intervals "
                        "(default 1)")
    p.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")
    p.add_argument("--ensemble", action="store_true",
                   help="with --seeds 2 or more: also score each cell's seeds as one model, their predictions "
                        "averaged (the table's 'seed ensemble' line)")
    p.add_argument("--only", action="append", metavar="ROW", help=f"run only this row (repeatable): {rows}")
    p.add_argument("--archs", metavar="A,B", help=f"only these columns, comma-separated: {', '.join(ARCHS)}")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/compare-YYYYmmdd-HHMMSS)")
    p.add_argument("--json", metavar="FILE", help="also write the results matrix as JSON to FILE")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="cells trained at once, each in its own process (default: one per core, at most 2); "
                        "changes the time, never the numbers")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads per cell (default 1). The numbers depend on it: the same seed and thread "
                        "count give the same table")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from archlab.compare import (default_jobs, matrix_text, parse_budget, parse_plan, run_compare, select_archs,
                                 select_rows, write_reports)
    from archlab.compare.report import verdicts
    from archlab.utils.io import write_text_atomic

    budget = parse_budget(args.budget) if args.budget else 0.0
    if budget and args.plan != "default":
        raise ConfigError(f"--budget (time-boxed) and --plan {args.plan} (fixed work) exclude each other; give one")
    plan = None if budget else parse_plan(args.plan)
    check(args.seeds >= 1, f"--seeds must be >= 1, got {args.seeds}")
    check(args.seeds <= 100, f"--seeds must be <= 100, got {args.seeds}")
    check(not args.ensemble or args.seeds >= 2,
          f"--ensemble averages the seeds of each cell: it needs --seeds 2 or more, got --seeds {args.seeds}")
    check(args.threads >= 1, f"--threads must be >= 1, got {args.threads}")
    jobs = default_jobs() if args.jobs is None else args.jobs
    check(jobs >= 1, f"--jobs must be >= 1, got {jobs}")
    rows = select_rows(args.only)
    archs = None
    if args.archs is not None:
        archs = [a.strip() for a in args.archs.split(",") if a.strip()]
        check(archs, f"--archs {args.archs!r} names no architecture: give names separated by commas (e.g. cnn,lstm)")
    cells = {r.key: select_archs(r, archs) for r in rows}
    rows = [r for r in rows if cells[r.key]]
    check(rows, f"--archs {args.archs!r} leaves no cell in the chosen rows")
    out = Path(args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {str(out)!r} exists and is not an empty directory; choose a new one")
    if args.json:
        json_path = Path(args.json)
        check(json_path.parent.is_dir(), f"--json {args.json!r}: folder {str(json_path.parent)!r} does not exist")
    seeds = list(range(args.seed, args.seed + args.seeds))
    if budget:
        from archlab.compare.runner import check_budget

        check_budget(budget, sum(len(c) for c in cells.values()) * len(seeds), jobs)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    log(f"run directory {out}")
    # The reports are rewritten after every row, so an interrupted run keeps what it finished.
    result = run_compare(rows, cells, out, plan=plan, budget=budget, seeds=seeds, jobs=jobs, threads=args.threads,
                         device=args.device, log=log, on_row=lambda partial: write_reports(partial, out),
                         ensemble=args.ensemble)
    paths = write_reports(result, out)
    print(matrix_text(result))
    print()
    for line in verdicts(result):
        print(f"- {line}")
    print(f"\nreport: {paths['html']} (and report.md, result.json)")
    if args.json:
        import json

        write_text_atomic(args.json, json.dumps(result.to_json(), indent=2) + "\n")
    if result.interrupted:
        return 130
    return 0 if result.complete else 1
