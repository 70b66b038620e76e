"""``archlab list``: every registered model, by family."""

from __future__ import annotations

HELP = "list the registered models"  # the line `archlab --help` shows


def register(sub) -> None:
    from archlab.registry import FAMILIES

    p = sub.add_parser("list", help=HELP, description=__doc__)
    p.add_argument("--family", choices=FAMILIES, help="only this family")
    p.set_defaults(func=run)


def run(args) -> int:
    from archlab.registry import FAMILIES, model_index

    families = [args.family] if args.family else list(FAMILIES)
    for family in families:
        models = model_index(family)  # names and descriptions, without importing the models
        if not models:
            continue
        print(f"{family} ({len(models)})")
        width = max(len(m["name"]) for m in models)
        for m in models:
            print(f"  {m['name']:<{width}}  {m['description']}")
    return 0
