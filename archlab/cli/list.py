"""``archlab list``: every registered model, by family."""

from __future__ import annotations

from archlab.registry import FAMILIES, list_models, model_info


def register(sub) -> None:
    p = sub.add_parser("list", help="list the registered models", description=__doc__)
    p.add_argument("--family", choices=FAMILIES, help="only this family")
    p.set_defaults(func=run)


def run(args) -> int:
    families = [args.family] if args.family else list(FAMILIES)
    for family in families:
        names = list_models(family)
        if not names:
            continue
        print(f"{family} ({len(names)})")
        width = max(len(n) for n in names)
        for name in names:
            print(f"  {name:<{width}}  {model_info(name).description}")
    return 0
