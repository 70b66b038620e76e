"""``archlab choose``: look at a data set, recommend the architecture that fits it, show the evidence.

    profile    what the data is (kind, task) and what was measured: sizes, types, lengths, missing values
    rules      the texts' rule of thumb as one table (RULES, NOTES) and settings sized to the data
    evidence   a short bake-off of the top candidates on a validation split, printed as compare prints
    choice     the result as text and as JSON

    from archlab.choose import choose
    c = choose("breast_cancer", evidence=True)
    c.final.model            # "lightgbm", or the bake-off's winner when the evidence disagrees
    c.to_json()

It sits beside ``archlab.compare`` above the trainer: every candidate of the bake-off is an ordinary
training run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from archlab.choose.choice import Choice
from archlab.choose.evidence import Evidence, bake_off
from archlab.choose.profile import KIND_TASK, Profile, profile
from archlab.choose.rules import NOTES, RULES, Candidate, Recommendation, recommend

__all__ = ["choose", "Choice", "Profile", "profile", "recommend", "Recommendation", "Candidate", "RULES", "NOTES",
           "KIND_TASK", "Evidence", "bake_off"]


def choose(data: str, *, target: str | None = None, task: str | None = None, evidence: bool = False,
           out: str | Path | None = None, seed: int = 0, device: str = "auto",
           log: Callable[[str], None] = print) -> Choice:
    """Profile ``data``, apply the rules, and (with ``evidence``) run the bake-off; its runs go to
    ``out``, or to a temporary directory removed afterwards."""
    prof = profile(data, target=target, task=task)
    rec = recommend(prof)
    if not evidence:
        return Choice(prof, rec)
    if out is not None:
        return Choice(prof, rec, bake_off(prof, rec, Path(out), seed=seed, device=device, log=log))
    with tempfile.TemporaryDirectory(prefix="archlab-choose-") as tmp:
        return Choice(prof, rec, bake_off(prof, rec, Path(tmp), seed=seed, device=device, log=log))
