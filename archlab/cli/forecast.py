"""``archlab forecast``: a trained forecaster's forecast beyond the end of a series, and how it scores.

Prints the next N values after the last one of the series (dates and values), then the held-out
metrics beside two baselines on the same forecasts: ``naive`` (the last value repeated) and
``seasonal_naive`` (the last season repeated). ``rmse`` / ``mae`` score the forecast of the whole
test part from the origin before it; ``rmse_1step`` / ``mae_1step`` the rolling one-step-ahead
forecasts over it. All in the data's units, lower is better.

    archlab train --task forecast --model lstm_forecaster --out runs/co2 --max-steps 300
    archlab forecast --checkpoint runs/co2 --horizon 24 --csv co2_forecast.csv
    archlab forecast --checkpoint runs/co2-a --checkpoint runs/co2-b     (their forecasts averaged)
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

METRICS = ("rmse", "mae", "rmse_1step", "mae_1step")
MAX_HORIZON_FACTOR = 10  # --horizon at most 10x the series' length


HELP = "forecast a series with a trained forecaster, beside naive baselines"  # the line `archlab --help` shows


def register(sub) -> None:
    p = sub.add_parser("forecast", help=HELP, description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, action="append", metavar="DIR",
                   help="a run directory of `archlab train --task forecast` (or one of its checkpoints/step-N); "
                        "given twice or more, the runs forecast as one ensemble (their forecasts averaged)")
    p.add_argument("--data", metavar="SPEC",
                   help="co2 | sunspots | a CSV file (default: the series it was trained on)")
    p.add_argument("--value-column", metavar="NAME", help="with a CSV --data: the column of values")
    p.add_argument("--date-column", metavar="NAME", help="with a CSV --data: the column of ISO dates")
    p.add_argument("--horizon", type=int, metavar="N",
                   help="values to forecast beyond the end (default: the model's horizon; longer ones roll forward)")
    p.add_argument("--csv", metavar="FILE",
                   help="also write date,part,actual,forecast rows: the test part's forecast, then the future one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from archlab.errors import check
    from archlab.train import evaluate_model
    from archlab.train.evaluation import load_runs_for_evaluation
    from archlab.utils.runtime import resolve_device

    check(args.horizon is None or args.horizon >= 1, f"--horizon must be >= 1, got {args.horizon}")
    check(args.csv is None or Path(args.csv).expanduser().parent.is_dir(),
          f"--csv {args.csv!r}: its folder does not exist")
    check(args.csv is None or not Path(args.csv).expanduser().is_dir(),
          f"--csv {args.csv!r} is a folder, expected the name of a CSV file to write")
    overrides = {k: v for k, v in (("value_column", args.value_column), ("date_column", args.date_column))
                 if v is not None}
    model, task = load_runs_for_evaluation(args.checkpoint, args.data, overrides)
    check(task.name == "forecast",
          f"--checkpoint {args.checkpoint[0]!r} holds a model trained for task {task.name!r}; archlab forecast "
          "needs one trained with --task forecast")
    device = resolve_device(args.device)
    model = model.to(device).eval()
    horizon = args.horizon or task.config.horizon
    series = task.series
    longest = MAX_HORIZON_FACTOR * len(series.values)
    check(horizon <= longest, f"--horizon must be at most {longest:,} ({MAX_HORIZON_FACTOR}x the {len(series.values)} "
                              f"values of {series.name}; a forecast that far out means little), got {horizon}")
    name = getattr(model, "model_name", type(model).__name__)
    unit = f" ({series.unit})" if series.unit else ""

    dates, future = task.forecast_future(model, horizon)
    end = str(series.dates[-1]) if series.dates is not None else f"step {len(series.values) - 1}"
    print(f"{series.name}{unit}: {name}'s forecast of the {horizon} values after {end}")
    trained_on = (task.trained_on or {}).get("series")
    if trained_on and trained_on != series.name:
        print(f"(the model was trained on {trained_on!r}; its normalisation comes from that series)")
    column = "date" if series.dates is not None else "step"
    print(f"{column:<12}forecast")
    for d, v in zip(dates, future):
        print(f"{str(d):<12}{v:.6g}")

    metrics = evaluate_model(model, task, device, "fp32", batch_size=64)
    test_dates = task.dates_or_steps(task.cut_test, len(series.values))
    print()
    print(f"held out: the last {len(test_dates)} values ({str(test_dates[0])} .. {str(test_dates[-1])}); "
          "rmse/mae: one forecast from the origin before them, */_1step: rolling one-step-ahead")
    rows = [(name, metrics)]
    baselines = task.baselines()
    rows.append(("naive", baselines["naive"]))
    if "seasonal_naive" in baselines:
        rows.append((f"seasonal_naive ({task.season_note})", baselines["seasonal_naive"]))
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'':<{width}}" + "".join(f"{m:>12}" for m in METRICS))
    for label, values in rows:
        print(f"{label:<{width}}" + "".join(f"{values[m]:>12.4f}" if m in values else f"{'-':>12}"
                                            for m in METRICS))
    if "seasonal_naive" not in baselines:
        print(f"seasonal_naive: skipped, {task.season_note}")

    if args.csv:
        _, actual, predicted = task.forecast_test(model)
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([column, "part", "actual", "forecast"])
            for d, a, p in zip(test_dates, actual, predicted):
                w.writerow([str(d), "test", repr(float(a)), repr(float(p))])
            for d, p in zip(dates, future):
                w.writerow([str(d), "future", "", repr(float(p))])
        print(f"wrote {args.csv}")
    return 0
