"""A choice: the data's profile, the rule's recommendation, the evidence if asked for; as text and JSON.

The JSON (``archlab choose --json FILE``) has exactly these keys::

    {"data": str, "kind": "images" | "series" | "tabular" | "text-pairs" | "text-labels" | "text",
     "task": str, "recommended": {"family": str, "model": str, "settings": {}},
     "candidates": [{"family", "model"}], "reasons": [str], "evidence": {...} | null}

``recommended`` is the final recommendation: the rule's pick, or the bake-off's winner when the
evidence disagrees; ``candidates`` are the runner-ups in rank order.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archlab.choose.evidence import Evidence, compare_table
from archlab.choose.profile import Profile
from archlab.choose.rules import Candidate, Recommendation

PERCENT_METRICS = ("accuracy", "wer", "per")


def fmt_metric(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if metric in PERCENT_METRICS else f"{value:.4g}"


def train_command(profile: Profile, c: Candidate) -> str:
    """The ``archlab train`` command of a candidate, quoted for a POSIX shell."""
    sets = " ".join("--set " + shlex.quote(f"{k}={_plain(v)}") for k, v in c.settings.items())
    out = shlex.quote(f"runs/{c.model}-{Path(profile.data).stem}")
    return (f"archlab train --task {profile.task} --model {c.model} --data {shlex.quote(profile.data)} {sets} "
            f"--out {out}")


def _plain(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    return str(v).lower() if isinstance(v, bool) else str(v)


@dataclass
class Choice:
    profile: Profile
    rule: Recommendation
    evidence: Evidence | None = None

    @property
    def final(self) -> Candidate:
        """The rule's pick, unless the evidence ran and a different candidate won it."""
        if self.evidence is not None and self.evidence.winner is not None and not self.evidence.agrees:
            return self.evidence.winner
        return self.rule.recommended

    def to_json(self) -> dict[str, Any]:
        final = self.final
        others = [c for c in self.rule.candidates if c is not final]
        reasons = list(self.rule.reasons)
        if self.evidence is not None:
            reasons.append(self.verdict())
        return {
            "data": self.profile.data, "kind": self.profile.kind, "task": self.profile.task,
            "recommended": {"family": final.family, "model": final.model, "settings": _jsonable(final.settings)},
            "candidates": [c.as_json() for c in others], "reasons": reasons,
            "evidence": self.evidence.as_json(self.rule.recommended) if self.evidence is not None else None,
        }

    def verdict(self) -> str:
        ev, pick = self.evidence, self.rule.recommended
        assert ev is not None
        scored = {t.candidate.model + t.candidate.family: t for t in ev.trials}
        if ev.winner is None:
            return "no candidate finished the bake-off: the rule's pick stands"
        won = scored[ev.winner.model + ev.winner.family]
        what = f"validation {ev.metric} {fmt_metric(ev.metric, won.value)}"
        if ev.agrees:
            return f"the evidence agrees: {pick.model} ({pick.family}) has the best {what}"
        mine = scored.get(pick.model + pick.family)
        theirs = fmt_metric(ev.metric, mine.value) if mine is not None else "-"
        return (f"the evidence disagrees: {ev.winner.model} ({ev.winner.family}) has the best {what}, "
                f"{pick.model} {theirs}; on this data, use {ev.winner.model}")

    def to_text(self) -> str:
        p, rec = self.profile, self.rule
        lines = [f"{p.data}: {p.kind} data -> task {p.task}", f"  {p.summary}", "",
                 f"recommended: {rec.recommended.model} ({rec.recommended.family})",
                 "  settings: " + " ".join(f"{k}={_plain(v)}" for k, v in rec.recommended.settings.items()),
                 f"  {train_command(p, rec.recommended)}"]
        if rec.runner_ups:
            lines.append("runner-ups: " + ", ".join(f"{c.model} ({c.family})" for c in rec.runner_ups))
        lines += ["", "why:", *(f"  - {r}" for r in rec.reasons)]
        if self.evidence is not None:
            steps = sorted({t.steps for t in self.evidence.trials if not t.error})
            lines += ["", f"evidence: the top {len(self.evidence.trials)} trained for "
                          f"{' / '.join(map(str, steps)) or '-'} steps each, scored on the validation split", "",
                      compare_table(p, self.evidence), "", self.verdict()]
            if not self.evidence.agrees and self.evidence.winner is not None:
                lines.append(f"  {train_command(p, self.evidence.winner)}")
        return "\n".join(lines)


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
