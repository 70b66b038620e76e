"""archlab backtest: choose a forecaster's settings on earlier forecast origins, not on the test part.

The recipe (--config, a forecast recipe such as configs/cnn_co2_refit.yaml) and each --variant of it
are trained, from --seeds seeds, on every value before each of --origins earlier origins, and
forecast the stretch after it (as long as the test part, so the origins tile the values just
before the real test part; for a CSV series, 10% of what is left). The table gives each setting's RMSE at each origin (of its seeds'
averaged forecast) and their mean; the lowest mean is picked. With --test the picked setting alone
is then trained on everything before the real test part and scored on it, once.

    archlab backtest --config configs/cnn_co2_refit.yaml --variant "context_length=48 horizon=24" \\
        --seeds 5 --origins 4 --out runs/co2-backtest --test

Each run is a run directory under --out (OUT/SETTING/oK/sSEED, trainer output beside it in .log) that
archlab evaluate reads; finished runs are reused, so the same command after Ctrl-C goes on where it
stopped. OUT/backtest.json holds every figure.
"""

from __future__ import annotations

import sys

HELP = "choose a forecaster's settings on earlier forecast origins (a rolling-origin backtest)"


def register(sub) -> None:
    import argparse

    p = sub.add_parser("backtest", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE",
                   help="a forecast recipe (YAML or TOML with task: forecast, model:, data: and its settings)")
    p.add_argument("--variant", action="append", default=[], metavar="'KEY=VALUE ...'",
                   help="another setting to try: the recipe with these fields changed, pairs separated by spaces "
                        "(repeatable), e.g. --variant 'context_length=48 horizon=24'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a field of the recipe for every setting (repeatable), e.g. --set max_steps=200")
    p.add_argument("--data", help="co2 | sunspots | a CSV file (default: the recipe's data:)")
    p.add_argument("--seeds", type=int, default=3, metavar="N",
                   help="seeds 0..N-1 of every setting at every origin, scored as one ensemble (default 3)")
    p.add_argument("--origins", type=int, default=4, metavar="K",
                   help="earlier forecast origins, each one test part's length before the next (default 4)")
    p.add_argument("--test", action="store_true",
                   help="then train the picked setting on everything before the real test part and score it there")
    p.add_argument("--out", required=True, metavar="DIR", help="where the runs and backtest.json go")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads (default 1: the figures depend on it, as on the seed)")
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from archlab.compare.backtest import format_table, run_backtest
    from archlab.errors import check
    from archlab.train import Stopped, load_config_file, parse_set

    check(args.threads >= 1, f"--threads must be >= 1, got {args.threads}")  # --seeds, --origins: run_backtest
    torch.set_num_threads(args.threads)
    recipe = load_config_file(args.config)
    recipe.update(parse_set(args.set))
    if args.data:
        recipe["data"] = args.data

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = run_backtest(recipe, args.variant, seeds=args.seeds, n_origins=args.origins, out=args.out,
                              test=args.test, device=args.device, progress=progress)
    except (KeyboardInterrupt, Stopped) as e:
        print(f"archlab backtest: interrupted; the finished runs are kept under {args.out}: the same command goes "
              "on from there", file=sys.stderr)
        return e.exit_code if isinstance(e, Stopped) else 130
    print(format_table(result))
    return 0
