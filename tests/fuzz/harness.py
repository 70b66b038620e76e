"""Running one bad input and classifying what came of it.

Each case of ``cases.yaml`` is one bad input, to the command line (``cli``: arguments after
``archlab``, run in this process through ``archlab.cli.main`` -- or, with ``subprocess: true``, as
a real ``python -m archlab``) or to the Python API (``api``: code run with ``torch``, ``archlab``
and the fixtures in scope). Before it runs, a case may copy a fixture run into its own folder
(``copy``), write files there (``files``; a value starting with ``hex:`` is bytes) and delete
some (``delete``). ``{tmp}`` is the case's own folder, ``{NAME}`` a fixture's path.

The outcome is one of:

``clear``      refused with a message that holds every ``expect`` phrase: for the CLI exit status
               2 (1 for a run that cannot go on) and one error line, no traceback; for the API a
               ``ValueError`` or ``TypeError``
``traceback``  anything else that failed: an exception out of ``main``, a traceback or a
               multi-line dump on stderr, another exception type, or a message that does not say
               what was wrong (lacks the ``expect`` phrases)
``silent``     accepted: exit status 0, or no exception
``hang``       still running after ``timeout`` seconds (default 20; 90 for a real process, which
               pays for starting Python and torch)
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUTCOMES = ("clear", "traceback", "silent", "hang")


@dataclass
class Case:
    id: str
    expect: list[str]
    cli: str | None = None
    api: str | None = None
    subprocess: bool = False
    copy: dict[str, str] = field(default_factory=dict)   # {folder name under tmp: fixture name}
    files: dict[str, str] = field(default_factory=dict)  # {path under tmp: text, or "hex:..." bytes}
    delete: list[str] = field(default_factory=list)
    stdin: str | None = None
    timeout: float | None = None
    exit: int = 2
    slow: bool = False  # marked slow (deselected by -m "not slow")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Case":
        d = dict(d)
        expect = d.pop("expect")
        case = cls(expect=[expect] if isinstance(expect, str) else list(expect), **d)
        if case.timeout is None:
            case.timeout = 90.0 if case.subprocess else 20.0
        return case


class _Hang(BaseException):
    pass


def _fill(text: str, places: dict[str, str]) -> str:
    for k, v in places.items():
        text = text.replace("{" + k + "}", v)
    return text


def prepare(case: Case, tmp: Path, fixtures: dict[str, Path]) -> dict[str, str]:
    places = {"tmp": str(tmp), **{k: str(v) for k, v in fixtures.items()}}
    for name, fixture in case.copy.items():
        shutil.copytree(fixtures[fixture], tmp / name)
    for rel, content in case.files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("hex:"):
            path.write_bytes(bytes.fromhex(content[4:].replace(" ", "")))
        else:
            path.write_text(_fill(content, places))
    for rel in case.delete:
        path = tmp / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return places


def _alarm(seconds: float):
    def handler(signum, frame):
        raise _Hang()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return old


def _clear_message(err: str, expect: list[str]) -> tuple[str, str]:
    """Classify the stderr of a failed command."""
    lines = [l for l in err.strip().splitlines() if l.strip()]
    if "Traceback (most recent call last)" in err:
        return "traceback", err[-1500:]
    if not lines:
        return "traceback", "failed with nothing on stderr"
    errors = [l for l in lines if ": error: " in l]
    if len(errors) != 1 or errors[0] != lines[-1]:
        return "traceback", "not one error line at the end:\n" + "\n".join(lines[-6:])
    missing = [e for e in expect if e not in lines[-1]]
    if missing:
        return "traceback", f"message lacks {missing}: {lines[-1]}"
    return "clear", lines[-1]


def run_cli(case: Case, places: dict[str, str], tmp: Path) -> tuple[str, str]:
    argv = [_fill(a, places) for a in shlex.split(case.cli)]
    if case.subprocess:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        try:
            p = subprocess.run([sys.executable, "-m", "archlab", *argv], cwd=tmp, env=env, capture_output=True,
                               text=True, timeout=case.timeout, input=case.stdin or "")
        except subprocess.TimeoutExpired:
            return "hang", f"no exit after {case.timeout} s"
        code, err = p.returncode, p.stderr
    else:
        from archlab.cli import main

        out, err_io = io.StringIO(), io.StringIO()
        old_stdin, old_cwd = sys.stdin, os.getcwd()
        sys.stdin = io.StringIO(case.stdin or "")
        os.chdir(tmp)
        old = _alarm(case.timeout)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err_io):
                try:
                    code = main(argv)
                except SystemExit as e:  # argparse
                    code = e.code if isinstance(e.code, int) else 2
        except _Hang:
            return "hang", f"no exit after {case.timeout} s"
        except Exception:
            return "traceback", traceback.format_exc()[-1500:]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            sys.stdin = old_stdin
            os.chdir(old_cwd)
        err = err_io.getvalue()
    if code == 0:
        return "silent", f"exit 0; stderr: {err[-300:]}"
    if code != case.exit:
        outcome, detail = _clear_message(err, case.expect)
        return ("traceback" if outcome == "clear" else outcome), f"exit {code}, expected {case.exit}: {detail}"
    return _clear_message(err, case.expect)


def run_api(case: Case, places: dict[str, str], tmp: Path) -> tuple[str, str]:
    import torch
    import torch.nn.functional as F

    import archlab
    import archlab.nn as anl

    scope = {"torch": torch, "F": F, "archlab": archlab, "anl": anl, "tnn": torch.nn, "Path": Path,
             **{k: Path(v) for k, v in places.items()}}
    old = _alarm(case.timeout)
    try:
        exec(compile(_fill(case.api, places), f"<case {case.id}>", "exec"), scope)
    except _Hang:
        return "hang", f"no return after {case.timeout} s"
    except (ValueError, TypeError) as e:
        message = str(e)
        missing = [x for x in case.expect if x not in message]
        if missing:
            return "traceback", f"{type(e).__name__} lacks {missing}: {message[:500]}"
        return "clear", f"{type(e).__name__}: {message[:300]}"
    except Exception as e:
        return "traceback", f"{type(e).__name__}: {str(e)[:500]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return "silent", "no exception"


def run_case(case: Case, tmp: Path, fixtures: dict[str, Path]) -> tuple[str, str]:
    places = prepare(case, tmp, fixtures)
    return run_cli(case, places, tmp) if case.cli is not None else run_api(case, places, tmp)
