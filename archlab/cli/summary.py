"""``archlab summary TARGET``: a model's layers, their output shapes, parameters and FLOPs.

TARGET is a registered model name (built with freshly initialised weights; ``--set key=value``
overrides its config fields, as in ``archlab train``), a run directory of ``archlab train`` (or one of
its checkpoints), a folder written by ``save_pretrained``, or a Hugging Face folder archlab loads
(BERT, GPT-2). The model runs once on a CPU on an example input chosen from its config
(``archlab.inspect.examples``): an image of its documented size, token ids of length
``min(block_size, 64)``, source and target ids, a forecasting window, ... ``--input-size`` or
``--seq-len`` choose another. FLOPs count a multiply-add as 2, for the whole example batch.
``--json`` prints the table as JSON (or writes it to FILE) instead of text.
"""

from __future__ import annotations

import math
import sys

from archlab.errors import ConfigError, check

MAX_INPUT_VALUES = 2**27  # 0.5 GiB of float32: a summary's example input, not a data set


HELP = "layers, output shapes, parameters and FLOPs of a model"  # the line `archlab --help` shows


def register(sub) -> None:
    p = sub.add_parser("summary", help=HELP, description=__doc__)
    p.add_argument("model", metavar="TARGET",
                   help="a registered model name (`archlab list`), a run directory, or a saved / Hugging Face folder")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--input-size", metavar="B,C,H,W",
                      help="shape of the (first) input, batch first, e.g. 1,3,224,224; B,T for token ids")
    size.add_argument("--seq-len", type=int, metavar="T", help="sequence length for sequence models")
    p.add_argument("--batch-size", type=int, metavar="B", help="batch of the example input (default 1)")
    p.add_argument("--depth", type=int, default=3, metavar="N", help="nesting depth of the table (default 3)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model config field (repeatable), e.g. --set n_layer=2")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="the table as JSON, on standard output or into FILE")
    p.set_defaults(func=run)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``."""
    parts = [t.strip() for t in text.strip("()[] ").split(",")]
    try:
        shape = tuple(int(t) for t in parts)
    except ValueError:
        shape = ()
    check(bool(shape) and all(s >= 1 for s in shape),
          f"--input-size takes positive integers separated by commas (e.g. 1,3,224,224), got {text!r}")
    check(math.prod(shape) <= MAX_INPUT_VALUES,
          f"--input-size {text} has {math.prod(shape):,} values, more than the {MAX_INPUT_VALUES:,} a summary runs on")
    return shape


def model_settings(target: str, sets: list[str]) -> dict:
    """``--set`` values as config fields of registry model ``target`` (empty for anything else)."""
    from pathlib import Path

    from archlab.registry import model_info
    from archlab.train.config import parse_set, route_settings
    from archlab.train.resolve import model_config_class

    if not sets:
        return {}
    check(not Path(target).exists(), f"--set changes a registry model's config; {target!r} is a saved model, "
                                     "whose config is fixed by its weights")
    model_info(target)  # an unknown name: a clear error with suggestions
    routed = route_settings(parse_set(sets), {"model": model_config_class(target)})
    for note in routed.notes:  # a setting given under another family's name: say how it was read
        print(f"note: {note}", file=sys.stderr)
    return routed.groups["model"]


def run(args) -> int:
    import json
    from pathlib import Path

    from archlab.inspect import example_inputs, summarize
    from archlab.inspect.target import load_target

    check(args.depth >= 0, f"--depth must be >= 0, got {args.depth}")
    check(args.seq_len is None or args.seq_len >= 1, f"--seq-len must be >= 1, got {args.seq_len}")
    check(args.batch_size is None or args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}")
    shape = parse_shape(args.input_size) if args.input_size else None
    if shape is not None and args.batch_size is not None:
        check(shape[0] == args.batch_size,
              f"--batch-size {args.batch_size} disagrees with the batch of --input-size {args.input_size}")
    target = load_target(args.model, settings=model_settings(args.model, args.sets))
    model = target.model
    example = example_inputs(model, batch_size=args.batch_size or 1, shape=shape, seq_len=args.seq_len)
    try:
        summary = summarize(model, example.args)
    except ConfigError:
        raise  # the model's own message: what it expects, what it got
    except (RuntimeError, ValueError, IndexError) as e:  # a shape deep inside does not work out
        shapes = ", ".join(str(s) for s in example.shapes)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{args.model} cannot run on input {shapes}: {first_line}") from e
    if args.json is not None:
        text = json.dumps({"target": args.model, "kind": target.kind, "model": target.name,
                           "input": {"kind": example.kind, "shapes": [list(s) for s in example.shapes]},
                           **summary.to_dict()}, indent=1)
        if args.json == "-":
            print(text)
        else:
            out = Path(args.json)
            check(out.parent.is_dir(), f"--json {args.json!r}: the folder {str(out.parent)!r} does not exist")
            out.write_text(text + "\n", encoding="utf-8")
        return 0
    print(f"{args.model} ({_family(target)}), input {example.kind} " + ", ".join(str(s) for s in example.shapes))
    print(summary.to_text(depth=args.depth))
    return 0


def _family(target) -> str:
    """The registry family of a registry name; what the target is otherwise."""
    from archlab.inspect.target import KINDS
    from archlab.registry import model_info

    if target.kind == "registry":
        return model_info(target.name).family
    return f"{target.name}, {KINDS[target.kind]}"
