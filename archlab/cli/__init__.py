"""The ``archlab`` command line.

Each command lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func=run`` (``run(args) -> int`` exit status). Modules are found by
name, so a new command is a new file. ``ConfigError`` (bad input) and an ``OSError`` on a path the
user gave (a folder that cannot be written, a disk that is full) exit with status 2 and a one-line
message; nothing is overwritten. A ``TrainingError`` (a run that cannot go on, such as a
non-finite loss) exits with status 1, also in one line.
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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="archlab",
        description="Read, train, verify and understand CNNs, RNNs and Transformers.",
        epilog="Run `archlab COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"archlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import archlab.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}").register(sub)
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
    parser = build_parser()
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
