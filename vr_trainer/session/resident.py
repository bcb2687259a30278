"""The trainee's id in a recording (``vr-trainer run --resident ID``): what cohorts group by.

An id, not a name: a programme's own trainee code (``r07``, ``ortho.2026.03``). It identifies
the resident doing the exercise, never the patient whose anatomy is used; it must not be a
patient identifier (no names, record or accession numbers)."""

from __future__ import annotations

import re

RESIDENT_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
UNASSIGNED = "unassigned"  # the cohort group of recordings made without --resident


def check_resident_id(text: str) -> str:
    """``text`` if it is a valid resident id (1-64 of A-Z a-z 0-9 _ . -), else ValueError saying so."""
    if not RESIDENT_ID_RE.match(text):
        raise ValueError(f"--resident {text!r}: a resident id is 1 to 64 letters, digits, '_', '.' or '-' "
                         "(a trainee code such as r07, not a name and never a patient identifier)")
    return text
