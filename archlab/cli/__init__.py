"""The ``archlab`` command line.

Each command lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func=run`` (``run(args) -> int`` exit status), and ``HELP``, its line in
``archlab --help``. Modules are found by name, so a new command is a new file. ``ConfigError``
(bad input) exits with status 2 and a one-line message; nothing is overwritten.

Start-up is kept short: a command module imports torch (and anything heavy) inside ``register``
or ``run``, never at its top, and only the command being run is registered in full; the others
are listed by their ``HELP``. So ``archlab --help``, ``--version`` and ``archlab list`` answer
without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from archlab import __version__
from archlab.errors import ConfigError


def command_names() -> list[str]:
    """The commands: one per module of this package (sorted), found without importing them."""
    import archlab.cli as pkg

    return sorted(info.name for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_"))


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; only the command named in ``argv`` (all of them if None) is built in
    full, the others are listed by their ``HELP`` line."""
    parser = argparse.ArgumentParser(
        prog="archlab",
        description="Read, train, verify and understand CNNs, RNNs and Transformers.",
        epilog="Run `archlab COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"archlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = command_names()
    # The command is the first word that is not an option (the top level has only -h and --version).
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        if argv is None or name == chosen or not hasattr(module, "HELP"):
            module.register(sub)
        else:
            sub.add_parser(name, help=module.HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [*argv]  # (not list(): the `list` command module shadows it here)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"archlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"archlab {args.command}: interrupted", file=sys.stderr)
        return 130
