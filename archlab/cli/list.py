"""``archlab list``: every registered model, by family, with the tasks that train it.

``archlab list --task lm`` lists only the models task ``lm`` can train; ``archlab list --settings
MODEL`` prints every config field of one model with its default (the variant's own, e.g.
``vit_tiny``'s image size), each a key that ``archlab train --set KEY=VALUE`` takes.

The listing is read from the registry's model index (``archlab.registry.model_index``), so it
answers without importing torch; ``--settings`` builds the model's config and imports it.
"""

from __future__ import annotations

HELP = "list the registered models (and what trains them)"  # the line `archlab --help` shows


def register(sub) -> None:
    from archlab.registry import FAMILIES

    p = sub.add_parser("list", help=HELP, description=__doc__)
    p.add_argument("--family", choices=FAMILIES, help="only this family")
    p.add_argument("--task", metavar="TASK", help="only the models this task can train (e.g. lm, classify)")
    p.add_argument("--settings", metavar="MODEL", help="the config fields of MODEL and their defaults")
    p.set_defaults(func=run)


def _settings(name: str) -> int:
    import dataclasses

    from archlab.registry import model_config, model_info

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
    from archlab.errors import ConfigError
    from archlab.registry import FAMILIES, model_index, task_index

    if args.settings:
        return _settings(args.settings)
    if args.task and args.task not in task_index():
        raise ConfigError(f"unknown task {args.task!r}; known tasks: {', '.join(task_index())}")
    families = [args.family] if args.family else list(FAMILIES)
    for family in families:
        # names, tasks and descriptions, without importing the models
        models = [m for m in model_index(family) if not args.task or args.task in m["tasks"]]
        if not models:
            continue
        print(f"{family} ({len(models)})")
        width = max(len(m["name"]) for m in models)
        tasks = {m["name"]: ", ".join(m["tasks"]) for m in models}
        task_width = max(len(t) for t in tasks.values())
        for m in models:
            print(f"  {m['name']:<{width}}  {tasks[m['name']]:<{task_width}}  {m['description']}")
    return 0
