"""PTED: the procedure model for a scenario and its bundle (rules in :mod:`.pted_model`, metrics in
:mod:`.pted_metrics`, fragment pieces in :mod:`.pted_fragment`, planner in :mod:`.pted_plan` and
:mod:`.pted_autopilot`).

:func:`pted_model` reads everything from the scenario and the bundle's own geometry: the bone
structures (tissue ``bone``) that stop instruments, the skin surface (tissue ``skin``) that
counts needle passes, the Kambin triangle landmark of the needle step's target, the midline (the
dural sac's centroid, else the bones'), and the fragment (the structure of the target the removal
step's ``removed()`` names, else the first structure of tissue ``pathology``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vr_trainer.procedures.pted_fragment import DEFAULT_PIECES, split_fragment
from vr_trainer.procedures.pted_model import KambinTriangle, PtedModel
from vr_trainer.scenario.schema import Scenario
from vr_trainer.sim.proximity import ProximityField

# distance-index refinement (sim.proximity): the bone stop needs the surface to a fraction of a
# millimetre near the tip; the skin only its inside/outside and the crossing point (a 340 mm trunk
# refined to 3 mm edges would cost ~100 s to index)
BONE_EDGE_MM = 5.0
SKIN_EDGE_MM = 12.0
EXACT_MM = 6.0  # both only need the sign and the surface near it: farther, a cheap lower bound


def _fragment_structure(scenario: Scenario, names: set[str], tissues: dict[str, str]) -> str | None:
    from vr_trainer.scenario.conditions import Compare, ConditionError, nodes, parse

    for step in scenario.steps:
        try:
            tree = parse(step.complete_when)
        except ConditionError:
            continue
        for n in nodes(tree):
            if isinstance(n, Compare) and n.value.fn == "removed" and n.value.arg:
                ref = next((t for t in scenario.targets if t.id == n.value.arg), None)
                name = ref.structure if ref is not None and ref.structure else n.value.arg
                if name in names:
                    return name
    for t in scenario.targets:
        if t.structure and tissues.get(t.structure) == "pathology":
            return t.structure
    return next((n for n, t in tissues.items() if t == "pathology"), None)


def _kambin(scenario: Scenario, landmarks: dict[str, Any]) -> KambinTriangle | None:
    names = [t.landmark for t in scenario.targets if t.landmark and t.landmark.startswith("kambin")]
    names += [n for n in landmarks if n.startswith("kambin") and scenario.anatomy.level
              and scenario.anatomy.level.replace("-", "_") in n and (scenario.anatomy.side or "") in n]
    for n in names:
        lm = landmarks.get(n)
        if isinstance(lm, dict) and "vertices_mm" in lm:
            v = np.asarray(lm["vertices_mm"], float).reshape(3, 3)
            inc = np.asarray(lm.get("incenter_mm") or v.mean(0), float)
            appr = lm.get("approach_direction")
            if appr is None:
                continue
            return KambinTriangle(v, inc, np.asarray(appr, float) / np.linalg.norm(appr))
    return None


def pted_model(scenario: Scenario, bundle: Any, world_from_patient: np.ndarray,
               n_pieces: int | None = None) -> PtedModel:
    """The PTED rules for ``scenario`` on ``bundle`` (an :class:`~vr_trainer.anatomy.bundle.Bundle`)."""
    structures = {st.name: st for st in bundle.structures}
    tissues = {n: st.tissue for n, st in structures.items()}
    bones = {n: (np.asarray(st.mesh.vertices), np.asarray(st.mesh.faces)) for n, st in structures.items()
             if st.tissue == "bone"}
    skins = {n: (np.asarray(st.mesh.vertices), np.asarray(st.mesh.faces)) for n, st in structures.items()
             if st.tissue == "skin" and st.watertight}
    sac = next((st for st in bundle.structures if st.tissue == "dura"), None)
    if sac is not None:
        midline = float(np.asarray(sac.mesh.vertices).mean(0)[0])
    elif bones:
        midline = float(np.mean([v.mean(0)[0] for v, _ in bones.values()]))
    else:
        midline = 0.0
    frag = _fragment_structure(scenario, set(structures), tissues)
    pieces = []
    piece_field = None
    if frag is not None:
        st = structures[frag]
        pieces = split_fragment(np.asarray(st.mesh.vertices), np.asarray(st.mesh.faces), n_pieces or DEFAULT_PIECES)
        piece_field = ProximityField.from_meshes({f"{frag}#{p.index}": (p.vertices_mm, p.faces) for p in pieces})
    return PtedModel(patient_from_world=np.linalg.inv(world_from_patient),
                     bone=ProximityField.from_meshes(bones, max_edge_mm=BONE_EDGE_MM, exact_mm=EXACT_MM) if bones
                     else None,
                     skin=ProximityField.from_meshes(skins, max_edge_mm=SKIN_EDGE_MM, exact_mm=EXACT_MM) if skins
                     else None,
                     kambin=_kambin(scenario, dict(bundle.landmarks)), midline_x_mm=midline,
                     fragment_structure=frag, pieces=pieces, piece_field=piece_field)
