"""``archlab explain TARGET``: one self-contained HTML page that shows a model's insides.

TARGET is a run directory of ``archlab train`` (or one of its checkpoints), a folder written by
``save_pretrained``, a Hugging Face folder archlab loads (BERT such as all-MiniLM-L6-v2, GPT-2),
or a registry name (random weights, and the page says so; ``--set`` changes its config).

The page shows what fits the model: for every model the layer table (shapes, parameters, FLOPs),
the prediction with its probabilities, the gradient reaching each layer for one batch and each
layer's activation statistics; the filters, feature maps and saliency of a convolutional network;
the gates and states over time of a recurrent one and a seq2seq model's attention alignment; every
attention layer and head of a Transformer with the tokens on the axes, a language model's
next-token distribution under temperature / top-k / top-p, a ViT's attention over its patches.

--input (repeatable): a text, an image file, or an index into the task's test data (17, #17 or
index:17; text:17 for the text "17"). By default a few test examples. An image of another size
than the model's data is refused unless --resize. The page needs no network: images are inline.
"""

from __future__ import annotations

import argparse
import sys
import time

HELP = "an HTML page of a model's insides: filters, gates, attention, gradients"  # the line `archlab --help` shows


def register(sub) -> None:
    p = sub.add_parser("explain", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="TARGET",
                   help="a run directory, a saved or Hugging Face model folder, or a registered model name")
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="TEXT|IMAGE|INDEX",
                   help="what to feed the model (repeatable); default: a few examples of the test data")
    p.add_argument("--out", metavar="FILE.html", help="where to write the page (default: explain-NAME.html)")
    p.add_argument("--examples", type=int, metavar="N",
                   help="test examples shown when no --input is given (default 3; a CLIP batch: 8)")
    p.add_argument("--resize", action="store_true", help="resize an --input image to the size the model reads")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a registry model's config field (repeatable), e.g. --set n_layer=2")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads (default 1: a page runs one small example at a time, where more "
                        "threads only wait for each other)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import torch

    from archlab.cli.summary import model_settings
    from archlab.errors import check

    started = time.perf_counter()
    check(args.threads >= 1, f"--threads must be >= 1, got {args.threads}")
    check(args.examples is None or 1 <= args.examples <= 16, f"--examples must be in [1, 16], got {args.examples}")
    out = Path(args.out) if args.out else None
    if out is not None:
        check(out.suffix.lower() in (".html", ".htm"), f"--out must name an .html file, got {args.out!r}")
        check(out.parent.is_dir() if str(out.parent) else True,
              f"--out {args.out!r}: the folder {str(out.parent)!r} does not exist")
    torch.set_num_threads(args.threads)
    tty = sys.stderr.isatty()

    def progress(stage: str) -> None:
        if tty:
            print(f"\rarchlab explain: {stage}...".ljust(60), end="", file=sys.stderr, flush=True)

    from archlab.explain import explain
    from archlab.inspect.target import load_target

    progress("loading")
    target = load_target(args.target, settings=model_settings(args.target, args.sets), with_task=True)
    page = explain(target, args.inputs, resize=args.resize, count=args.examples, progress=progress)
    out = out or Path(f"explain-{Path(target.name).name}.html")
    page.write(out)
    if tty:
        print("\r".ljust(61) + "\r", end="", file=sys.stderr)
    size = out.stat().st_size
    print(f"wrote {out} ({size / 2 ** 20:.2f} MB; sections: {', '.join(page.section_ids)}) in "
          f"{time.perf_counter() - started:.1f} s")
    return 0
