"""The ``archlab`` command line.

Each command lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func=run`` (``run(args) -> int`` exit status), and ``HELP``, its line in
``archlab --help``. Modules are found by name, so a new command is a new file. ``ConfigError``
(bad input) and an ``OSError`` on a path the user gave (a folder that cannot be written, a disk
that is full) exit with status 2 and a one-line message; nothing is overwritten. A
``TrainingError`` (a run that cannot go on, such as a non-finite loss) exits with status 1, also
in one line.

Start-up is kept short: a command module imports torch (and anything heavy) inside ``register``
or ``run``, never at its top, and only the command being run is registered in full; the others
are listed by their ``HELP``. So ``archlab --help``, ``--version`` and ``archlab list`` answer
without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys

from archlab import __version__
from archlab.errors import ConfigError, TrainingError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the flag (the usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line(message: object) -> str:
    """An error message on one line: a library's multi-line detail joined with '; '."""
    return "; ".join(part.strip() for part in str(message).strip().splitlines() if part.strip())


def command_names() -> list[str]:
    """The commands: one per module of this package (sorted), found without importing them."""
    import archlab.cli as pkg

    return sorted(info.name for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_"))


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; only the command named in ``argv`` (all of them if None) is built in
    full, the others are listed by their ``HELP`` line."""
    parser = Parser(
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
    for command in sub.choices.values():  # help is read in a terminal: no reStructuredText markup
        command.description = plain(command.description)
        command.epilog = plain(command.epilog)
        for action in command._actions:
            action.help = plain(action.help)
    return parser


def plain(text: str | None) -> str | None:
    """Docstring markup out of help text: ``code`` and `code` become code."""
    if not text:
        return text
    return re.sub(r"`{1,2}([^`]+)`{1,2}", r"\1", text)


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
        print(f"archlab {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"archlab {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `archlab list | head`: the reader has gone, nothing to report
        sys.stderr.close()
        return 0
    except OSError as e:
        where = f": {e.filename!r}" if getattr(e, "filename", None) else ""
        print(f"archlab {args.command}: error: {one_line(e.strerror or e)}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"archlab {args.command}: interrupted", file=sys.stderr)
        return 130
