"""``archlab experiment``: the texts' claims as measured experiments, each with a verdict.

    archlab experiment list                          the experiments, their claims, expected times
    archlab experiment NAME [--quick] [--seeds N]    one experiment: table, criterion, verdict
    archlab experiment all --quick                   every experiment, about 2 minutes of CPU time

Every experiment trains the library's own models with its trainer, prints its table and the
verdict with the criterion it was judged by, and writes result.json and a self-contained
report.html (plot and table) to its directory. More seeds give 95% intervals, and a verdict then
needs the whole interval to clear the criterion. No network needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from archlab.errors import ConfigError, check


def register(sub) -> None:
    p = sub.add_parser("experiment", help="the texts' claims as experiments: protocol, criterion, measured verdict",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME",
                   help="an experiment (see `archlab experiment list`), `all` for every one, or `list`")
    p.add_argument("--quick", action="store_true",
                   help="the short protocol, same as --size quick: fewer steps, smaller models or data; all eight "
                        "take about 2 minutes of CPU time (default: the full protocol)")
    p.add_argument("--size", choices=("tiny", "quick", "full"),
                   help="the protocol: full (default), quick, or tiny -- a smoke test of the whole path in seconds, "
                        "far too short to show any claim")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="repeat every training run with seeds 0..N-1 (default 1); N >= 2 gives 95%% intervals")
    p.add_argument("--out", metavar="DIR", help="where result.json, report.html and the training runs go "
                                                "(default: runs/experiment-NAME-YYYYmmdd-HHMMSS)")
    p.add_argument("--json", metavar="FILE", help="also write the result (for `all`: every result) as JSON to FILE")
    p.add_argument("--from", dest="saved", metavar="DIR",
                   help="train nothing: judge the measurement saved in DIR/result.json again (table, verdict, "
                        "report.html) with this version's criterion; NAME must be the saved experiment's")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default 1: these small models' kernels gain nothing from more, and "
                        "threads stall each other on a busy machine); parallelism measures at 1 and at every core unless given")
    p.set_defaults(func=run)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    return f"~{seconds:.0f} s" if seconds < 120 else f"~{seconds / 60:.0f} min"


def _list() -> int:
    from archlab.experiments import get_experiment, list_experiments

    rows = [("name", "claim", "texts", "quick", "full")]
    for name in list_experiments():
        e = get_experiment(name)
        rows.append((name, e.claim, f"seed {', '.join(e.texts)}" if e.texts else "", _duration(e.seconds[0]),
                     _duration(e.seconds[1])))
    widths = [max(len(r[i]) for r in rows) for i in (0, 2, 3, 4)]
    for name, claim, texts, quick, full in rows:
        print(f"{name:<{widths[0]}}  {texts:<{widths[1]}}  {quick:>{widths[2]}}  {full:>{widths[3]}}  {claim}")
    print("\nTimes are for 1 seed on an otherwise idle machine with 2 CPU cores (a busy one takes longer); "
          "`archlab experiment NAME --quick` runs the short protocol.")
    return 0


def _rejudge(args, chosen: list[str]) -> int:
    from archlab.experiments import get_experiment, result_text
    from archlab.experiments.core import conclude_saved
    from archlab.utils.io import write_text_atomic

    check(len(chosen) == 1, "--from judges one saved experiment: give its NAME, not `all`")
    saved = Path(args.saved) / "result.json"
    check(saved.is_file(), f"--from {args.saved!r}: {str(saved)!r} does not exist")
    name = json.loads(saved.read_text()).get("name")
    check(name == chosen[0], f"--from {args.saved!r} holds experiment {name!r}, not {chosen[0]!r}")
    result = conclude_saved(args.saved)
    print(f"== {name}: {get_experiment(name).title} (judged again from {saved}) ==")
    print(result_text(result))
    print(f"report: {Path(args.saved) / 'report.html'}")
    if args.json:
        write_text_atomic(args.json, json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    return 0


def run(args) -> int:
    from archlab.experiments import get_experiment, index_html, list_experiments, result_text, run_experiment
    from archlab.train import Stopped
    from archlab.utils.io import write_text_atomic
    from archlab.utils.runtime import resolve_device

    if args.name == "list":
        return _list()
    names = list_experiments()
    if args.name == "all":
        chosen = names
    elif args.name in names:
        chosen = [args.name]
    else:
        import difflib

        close = difflib.get_close_matches(args.name, names + ["all", "list"], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"NAME must be an experiment, `all` or `list`, got {args.name!r}; experiments: "
                          f"{', '.join(names)}{hint}")
    check(args.seeds >= 1, f"--seeds must be >= 1, got {args.seeds}")
    if args.saved:
        return _rejudge(args, chosen)
    check(args.threads is None or args.threads >= 1, f"--threads must be >= 1, got {args.threads}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or (f"runs/experiments-{stamp}" if args.name == "all" else f"runs/experiment-{args.name}-{stamp}"))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {str(out)!r} exists and is not an empty directory; choose a new one")
    if args.json:
        check(Path(args.json).parent.is_dir(), f"--json {args.json!r}: folder {str(Path(args.json).parent)!r} "
                                                "does not exist")
    check(not (args.quick and args.size not in (None, "quick")), f"--quick contradicts --size {args.size}")
    size = args.size or ("quick" if args.quick else "full")

    device = str(resolve_device(args.device))
    results, failed = [], []
    start = time.perf_counter()
    for i, name in enumerate(chosen, 1):
        e = get_experiment(name)
        expected = "" if size == "tiny" else (f", about {e.seconds[size == 'full'] * args.seeds:.0f} s "
                                               "on an idle 2-core machine")
        _log(f"[{i}/{len(chosen)}] {name}: {e.claim} ({size} protocol, {args.seeds} seed(s){expected})")
        where = out / name if len(chosen) > 1 else out
        try:
            result = run_experiment(name, where, size=size, seeds=args.seeds, device=device, threads=args.threads,
                                    log=_log)
        except (KeyboardInterrupt, ConfigError):
            raise
        except Stopped:  # SIGTERM / SIGINT inside a training run: stop everything, as an interrupt
            _log(f"archlab experiment: stopped during {name}")
            return 130
        except Exception as err:  # noqa: BLE001 -- one broken experiment must not lose the others
            failed.append(name)
            _log(f"  {name} FAILED: {type(err).__name__}: {err}")
            _log("".join(traceback.format_exception(err)[-3:]).rstrip())
            continue
        results.append(result)
        print(f"\n== {name}: {e.title} ==")
        print(result_text(result))
        print(f"report: {where / 'report.html'}\n", flush=True)
    seconds = time.perf_counter() - start
    if len(chosen) > 1:
        write_text_atomic(out / "index.html", index_html(results, seconds))
        print("summary")
        for r in results:
            print(f"  {r.name:<20} {'holds' if r.holds else 'DOES NOT HOLD':<14} {r.seconds:5.0f} s")
        for name in failed:
            print(f"  {name:<20} FAILED")
        print(f"{len(results)} experiment(s) in {seconds:.0f} s; index: {out / 'index.html'}")
    if args.json:
        payload = results[0].to_json() if len(chosen) == 1 and results else {
            "experiments": [r.to_json() for r in results], "failed": failed, "size": size, "seeds": args.seeds,
            "seconds": round(seconds, 1)}
        write_text_atomic(args.json, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return 1 if failed else 0
