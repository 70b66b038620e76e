"""``archlab translate``: a trained sequence-to-sequence model's output for words or sentences.

    archlab translate --checkpoint runs/g2p archlab        prints  archlab  AA1 R K L AE2 B
    printf 'tomato\\nzebra\\n' | archlab translate --checkpoint runs/g2p
    archlab translate --checkpoint runs/g2p-a --checkpoint runs/g2p-b --beam 5 archlab    (an ensemble)

Each input is printed, then two spaces, then its translation (for a G2P model: the phonemes).
Without TEXT the inputs are the non-empty lines of standard input. An input with a character the
model cannot read exits with status 2, naming the character.
"""

from __future__ import annotations

import argparse
import sys


HELP = "translate words or sentences with a trained seq2seq model"  # the line `archlab --help` shows


def register(sub) -> None:
    p = sub.add_parser("translate", help=HELP, description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, action="append", metavar="DIR",
                   help="a run directory of `archlab train --task seq2seq` or one of its checkpoints/step-N; "
                        "given twice or more, the runs decode as one ensemble (their next-phoneme or next-token "
                        "probabilities averaged at every step)")
    p.add_argument("--beam", type=int, default=1, metavar="N", help="beam size; 1 = greedy decoding (default)")
    p.add_argument("--batch-size", type=int, default=256, help="inputs decoded together")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu")
    p.add_argument("text", nargs="*", metavar="WORD_OR_SENTENCE", help="inputs (default: lines of stdin)")
    p.set_defaults(func=run)


def run(args) -> int:
    from archlab.errors import check
    from archlab.utils.runtime import resolve_device

    check(args.beam >= 1, f"--beam must be >= 1, got {args.beam}")
    check(args.batch_size > 0, f"--batch-size must be positive, got {args.batch_size}")
    texts = [t.strip() for t in (args.text or sys.stdin.read().splitlines())]
    texts = [t for t in texts if t]
    check(len(texts) > 0, "nothing to translate: give words or sentences, or lines on standard input")
    from archlab.train.evaluation import load_runs_for_evaluation, read_task_description

    for checkpoint in args.checkpoint:
        trained_for = read_task_description(checkpoint, use="translate with").get("task")
        check(trained_for == "seq2seq",
              f"--checkpoint {checkpoint!r} holds a model of task {trained_for!r}; archlab translate needs "
              "one trained with --task seq2seq")
    model, task = load_runs_for_evaluation(args.checkpoint)
    model = model.to(resolve_device(args.device)).eval()
    outputs = task.translate(model, texts, beam_size=args.beam, batch_size=args.batch_size)
    for text, output in zip(texts, outputs):
        print(f"{text}  {output}")
    return 0
