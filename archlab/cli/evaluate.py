"""``archlab evaluate``: the task's metrics of a trained model on a held-out split (test by default).

Several --checkpoint are evaluated as one ensemble: the runs' predictions averaged (encoder-decoders'
probabilities at every decoding step, beam search included; image classifiers' per image;
forecasters' forecasts, value by value; table models' class probabilities or predicted values,
boosted trees included)."""

from __future__ import annotations

import json


HELP = "print a trained model's metrics"  # the line `archlab --help` shows


def register(sub) -> None:
    p = sub.add_parser("evaluate", help=HELP, description=__doc__)
    p.add_argument("--checkpoint", required=True, action="append", metavar="DIR",
                   help="a run directory (archlab train --out), one of its checkpoints/step-N, or a Hugging Face "
                        "GPT-2 folder (then --data names the text). Given twice or more: the ensemble of those "
                        "runs (same task, data and vocabulary; seq2seq, image classification or forecasting), "
                        "scored on their averaged predictions")
    p.add_argument("--data", help="another data set name or path (default: the one it was trained on)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test",
                   help="the held-out split: test (default) or the validation split carved from the training data; "
                        "train: the examples it was trained on (image classification), for the train / test gap")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the run's task for this evaluation (repeatable), e.g. --set "
                        "beam_size=5 to decode a seq2seq model with a beam of 5 instead of greedily")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from archlab.errors import check
    from archlab.train import evaluate
    from archlab.train.config import parse_set

    check(args.batch_size > 0, f"--batch-size must be positive, got {args.batch_size}")
    metrics = evaluate(args.checkpoint, args.data, batch_size=args.batch_size, device=args.device,
                       precision=args.precision, split=args.split, task_settings=parse_set(args.set))
    if args.json:
        print(json.dumps(metrics))
    else:
        for name, value in metrics.items():
            print(f"{name} {value:.6g}")
    return 0
