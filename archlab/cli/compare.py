"""``archlab compare``: the architecture bake-off on bundled real data.

Rows are kinds of data -- images (MNIST-5k), a time series (monthly CO2), text (CMUdict
spelling -> phonemes) -- and columns are architectures: MLP, CNN, RNN, LSTM, GRU, Transformer,
each where it applies. Every cell is trained by the real trainer within its share of --budget and
scored on held-out data, beside the baselines. The matrix is printed; result.json, report.md and a
self-contained report.html (learning curves, predictions) go to the run directory. No network.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from archlab.errors import ConfigError, check


def register(sub) -> None:
    from archlab.compare import ARCHS, ROWS

    rows = ", ".join(f"{r.key} ({r.dataset})" for r in ROWS)
    p = sub.add_parser("compare", help="the architecture bake-off on bundled real data (images, series, text)",
                       description=__doc__)
    p.add_argument("--budget", default="5m",
                   help="wall-clock budget of the whole bake-off, e.g. 5m (default), 30m, 90s; every cell's "
                        "training time scales with it, also under --only")
    p.add_argument("--only", action="append", metavar="ROW", help=f"run only this row (repeatable): {rows}")
    p.add_argument("--archs", metavar="A,B", help=f"only these columns, comma-separated: {', '.join(ARCHS)}")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/compare-YYYYmmdd-HHMMSS)")
    p.add_argument("--json", metavar="FILE", help="also write the results matrix as JSON to FILE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: torch's). On a machine busy with other work, 1 is often "
                        "much faster for these small models: threads waiting for a busy core stall every step")
    p.set_defaults(func=run)


def run(args) -> int:
    from archlab.compare import matrix_text, parse_budget, run_compare, select_archs, select_rows, write_reports
    from archlab.compare.report import verdicts
    from archlab.utils.io import write_text_atomic

    budget = parse_budget(args.budget)
    if args.threads is not None:
        import torch

        check(args.threads >= 1, f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    rows = select_rows(args.only)
    archs = None
    if args.archs is not None:
        archs = [a.strip() for a in args.archs.split(",") if a.strip()]
        check(archs, f"--archs takes architecture names separated by commas (e.g. cnn,lstm), got {args.archs!r}")
    cells = {r.key: select_archs(r, archs) for r in rows}
    rows = [r for r in rows if cells[r.key]]
    check(rows, f"--archs {args.archs!r} leaves no cell in the chosen rows")
    out = Path(args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {str(out)!r} exists and is not an empty directory; choose a new one")
    if args.json:
        json_path = Path(args.json)
        check(json_path.parent.is_dir(), f"--json {args.json!r}: folder {str(json_path.parent)!r} does not exist")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    n_cells = sum(len(c) for c in cells.values())
    log(f"archlab compare: {n_cells} cells in {len(rows)} row(s), budget {budget:.0f} s, run directory {out}")
    # The reports are rewritten after every row, so an interrupted run keeps what it finished.
    result = run_compare(rows, cells, budget, out, seed=args.seed, device=args.device, log=log,
                         on_row=lambda partial: write_reports(partial, out))
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
