"""``archlab report RUN_DIR``: one self-contained HTML page of a training run.

Training and validation curves, the final validation and test metrics, the settings, and the
task's pictures from the saved model: a confusion matrix and misclassified images (classify), a
forecast of the held-out part (forecast), continuations of test prompts (lm), translations with
the differences marked (seq2seq). Works on any `archlab train --out` directory, and on a bake-off
cell (`runs/compare-.../cells/ROW-ARCH-sSEED`). Figures are inlined: the page needs no other file.
"""

from __future__ import annotations

HELP = "an HTML page of one training run: curves, metrics, settings, predictions"  # the line `archlab --help` shows

def register(sub) -> None:
    p = sub.add_parser("report", help=HELP, description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (archlab train --out)")
    p.add_argument("--out", metavar="FILE", help="where to write the page (default: RUN_DIR/report.html)")
    p.set_defaults(func=run)


def run(args) -> int:
    from archlab.inspect.report import write_run_report

    path = write_run_report(args.run_dir, args.out)
    print(path)
    return 0
