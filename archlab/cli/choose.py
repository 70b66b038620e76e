"""``archlab choose DATA``: look at a data set, recommend the architecture that fits it, and why.

DATA is a data set archlab knows (mnist5k, digits, co2, sunspots, cmudict, cmudict-syllables,
breast_cancer, wine, diabetes, ...) or a path: a folder of images (one subfolder per class), a CSV
table (numeric and categorical columns and a target), a CSV time series (a date column and a
value column, or one numeric column), a TSV of source<TAB>target pairs, a TSV of text<TAB>label
lines (or a CSV of text and label), or a plain text file. It prints what it measured, the
recommended family and a registered model with settings sized to the data (and the `archlab train`
command), the runner-ups, and the reasons. --evidence trains the top three candidates for a fixed
number of steps each and scores them on a validation split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from archlab.errors import check

HELP = "look at a data set and recommend the architecture (with --evidence: a bake-off)"  # the line `archlab --help` shows


def register(sub) -> None:
    from archlab.choose import KIND_TASK

    p = sub.add_parser("choose", help=HELP, description=__doc__)
    p.add_argument("data", metavar="DATA", help="a known data set name or the path of your data")
    p.add_argument("--target", metavar="COLUMN", help="the column to predict (tables) or to forecast (series) where "
                                                       "it cannot be inferred")
    p.add_argument("--task", choices=sorted(KIND_TASK.values()), help="override the guessed task")
    p.add_argument("--evidence", action="store_true",
                   help="train the top 3 candidates briefly and compare them on a validation split")
    p.add_argument("--json", metavar="FILE", help="also write the choice as JSON to FILE")
    p.add_argument("--out", metavar="DIR", help="keep the evidence's run directories here (default: a temporary one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads for the bake-off (default 1: its models are small, and on a busy machine "
                        "threads that wait for each other made it 10x slower here)")
    p.set_defaults(func=run)


def run(args) -> int:
    from archlab.choose import choose
    from archlab.utils.io import write_text_atomic

    if args.json:
        folder = Path(args.json).parent
        check(folder.is_dir(), f"--json {args.json!r}: folder {str(folder)!r} does not exist")
    check(args.threads >= 1, f"--threads must be >= 1, got {args.threads}")
    if args.evidence:
        import torch

        torch.set_num_threads(args.threads)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    choice = choose(args.data, target=args.target, task=args.task, evidence=args.evidence, out=args.out,
                    seed=args.seed, device=args.device, log=log)
    print(choice.to_text())
    if args.json:
        write_text_atomic(args.json, json.dumps(choice.to_json(), indent=2) + "\n")
    return 0
