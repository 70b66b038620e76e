"""``archlab list``: every registered model, by family, with the tasks that train it.

``archlab list --task lm`` lists only the models task ``lm`` can train; ``archlab list --settings
MODEL`` prints every config field of one model with its default (the variant's own, e.g.
``vit_tiny``'s image size), each a key that ``archlab train --set KEY=VALUE`` takes.
"""

from __future__ import annotations

import dataclasses

from archlab.registry import FAMILIES, list_models, model_config, model_info


def register(sub) -> None:
    p = sub.add_parser("list", help="list the registered models (and what trains them)", description=__doc__)
    p.add_argument("--family", choices=FAMILIES, help="only this family")
    p.add_argument("--task", metavar="TASK", help="only the models this task can train (e.g. lm, classify)")
    p.add_argument("--settings", metavar="MODEL", help="the config fields of MODEL and their defaults")
    p.set_defaults(func=run)


def _settings(name: str) -> int:
    entry = model_info(name)
    config = model_config(name)
    print(f"{name} ({entry.family}; {', '.join(i.title for i in entry.interfaces)}): {entry.description}")
    print(f"settings of {entry.config_class.__name__} (archlab train --set KEY=VALUE):")
    fields = dataclasses.fields(config)
    width = max(len(f.name) for f in fields)
    for f in fields:
        print(f"  {f.name:<{width}}  {getattr(config, f.name)!r}")
    print(f"trained by task(s): {', '.join(entry.tasks) or 'none'}; the data fixes some of these "
          "(vocabulary, classes, input size): those are set for you")
    return 0


def run(args) -> int:
    if args.settings:
        return _settings(args.settings)
    if args.task:
        from archlab.tasks import get_task

        get_task(args.task)  # an unknown task fails with the list of known ones
    families = [args.family] if args.family else list(FAMILIES)
    for family in families:
        names = [n for n in list_models(family) if not args.task or args.task in model_info(n).tasks]
        if not names:
            continue
        print(f"{family} ({len(names)})")
        width = max(len(n) for n in names)
        tasks = {n: ", ".join(model_info(n).tasks) for n in names}
        task_width = max(len(t) for t in tasks.values())
        for name in names:
            print(f"  {name:<{width}}  {tasks[name]:<{task_width}}  {model_info(name).description}")
    return 0
