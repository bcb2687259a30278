"""Tissue classes the renderer knows, and per-tissue triangle budgets.

The names are a contract with ``vr_trainer.render`` (materials) and
``vr_trainer.sim`` (what an instrument may touch): use exactly these.
"""

from __future__ import annotations

from .errors import AnatomyError

TISSUES: tuple[str, ...] = (
    "bone",
    "cortical_bone",
    "disc",
    "nerve",
    "dura",
    "vessel",
    "cartilage",
    "muscle",
    "skin",
    "ligament",
    "fat",
    "organ",
    "implant",
    "pathology",
)

#: Maximum triangles per structure after decimation, by tissue.  Bones carry
#: the detail a surgeon looks at; soft tissue and roots need far less.
FACE_BUDGET: dict[str, int] = {
    "bone": 14000,
    "cortical_bone": 14000,
    "disc": 3000,
    "nerve": 2500,
    "dura": 5000,
    "vessel": 5000,
    "cartilage": 5000,
    "muscle": 6000,
    "skin": 20000,
    "ligament": 2500,
    "fat": 6000,
    "organ": 8000,
    "implant": 20000,
    "pathology": 2000,
}


def check_tissue(tissue: str, where: str = "") -> str:
    """Return ``tissue`` if it is a known class, else raise :class:`AnatomyError`."""
    if tissue not in TISSUES:
        loc = f"{where}: " if where else ""
        raise AnatomyError(
            f"{loc}unknown tissue {tissue!r}; use one of: {', '.join(TISSUES)}"
        )
    return tissue
