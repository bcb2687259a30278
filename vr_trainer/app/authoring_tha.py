"""`vr-trainer new-scenario --procedure tha`: the anterior-approach hip arthroplasty scenario (reaming,
then the cup impacted at the planned angles) for any bundle with a pelvis (the workflow of
:mod:`vr_trainer.procedures.tha_workflow`).

Everything the operation needs comes from the bundle's bones when it runs (the anterior pelvic plane,
the native acetabulum fitted to the bone); the file holds the plan (Lewinnek's safe zone, 2 mm of
reaming, reamer and cup sized to the native acetabulum found now), the side, the instruments and
steps, where the C-arm looks (the native centre found now) and the risk structures the bundle has.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

STEPS = """\
steps:
  - id: ream
    instruments: [reamer]
    complete_when: "action(reamed)"
    time_allowance_s: 40
    prompt:
      en: "Ream along the planned axis (40° / 15°) to 2 mm deeper than the native socket; release the trigger"
      zh: "沿计划轴线（40° / 15°）磨锉至比原髋臼深 2 mm；松开扳机"
    hints:
      - after_s: 20
        text:
          en: "Watch the reamed depth: stop at 2 mm, do not push through the medial wall"
          zh: "注意磨锉深度：到 2 mm 即停，勿穿透内侧壁"
  - id: impact_cup
    instruments: [impactor]
    complete_when: "action(cup_impacted)"
    time_allowance_s: 40
    prompt:
      en: "Seat the cup in the socket, turn it to 40° inclination and 15° anteversion, then impact"
      zh: "将髋臼杯放入髋臼，调整至外展 40°、前倾 15°，然后打入"
    hints:
      - after_s: 20
        text:
          en: "The readout shows the cup's angles live: both must be inside the safe zone"
          zh: "导航实时显示臼杯角度：两者都应在安全区内"
"""

EVENTS = """\
events:
  - id: cup_outside_zone
    when: "action(cup_outside_zone)"
    once: true
    effects:
      - prompt:
          en: "The cup is outside the safe zone (Lewinnek): dislocation risk"
          zh: "髋臼杯位于安全区外（Lewinnek）：有脱位风险"
      - sound: warning
  - id: medial_wall_breach
    when: "action(medial_wall_breach)"
    once: true
    effects:
      - prompt:
          en: "The reamer is through the medial wall: stop reaming"
          zh: "髋臼锉已穿透内侧壁：停止磨锉"
      - haptic: {amplitude: 1.0, duration_s: 0.3}
"""

RUBRIC = """\
rubric:
  pass_mark: 70
  metrics:
    - {metric: steps_completed_pct, weight: 3, full_marks_at: 100, zero_marks_at: 50}
    - {metric: total_time_s, weight: 1, full_marks_at: 40, zero_marks_at: 120}
    - {metric: cup_inclination_error_deg, weight: 3, full_marks_at: 1, zero_marks_at: 10}
    - {metric: cup_anteversion_error_deg, weight: 3, full_marks_at: 1, zero_marks_at: 10}
    - {metric: cup_in_safe_zone, weight: 2, full_marks_at: 1, zero_marks_at: 0}
    - {metric: reaming_depth_error_mm, weight: 2, full_marks_at: 0.5, zero_marks_at: 4}
    - {metric: medialisation_mm, weight: 1, full_marks_at: 3, zero_marks_at: 8}
    - {metric: leg_length_discrepancy_mm, weight: 1, full_marks_at: 2, zero_marks_at: 6}
"""


def _v(p: np.ndarray) -> str:
    return "[" + ", ".join(f"{round(float(x), 1) + 0.0:.1f}" for x in p) + "]"


def _side(bundle: Any, side: str | None, pelves: list[Any]) -> str:
    if side in ("left", "right"):
        return str(side)
    declared = bundle.landmarks.get("side")
    if declared in ("left", "right"):
        return str(declared)
    names = " ".join(s.name.lower() for s in pelves + list(bundle.structures))
    sides = [sd for sd in ("left", "right") if f"hip_center_{sd}_mm" in bundle.landmarks
             or f"acetabular_{sd}" in names or any(sd in s.name.lower() for s in pelves)]
    if len(sides) != 1:
        raise ValueError(f"choose the operated hip with --side left|right (bundle {bundle.path} has acetabula on: "
                         f"{', '.join(sides) or 'no side it names'})")
    return sides[0]


def render_tha_workflow(bundle: Any, bundle_ref: str, side: str | None, bundle_name: str) -> str:
    """The scenario text; raises ValueError (as the THA model would) when the bundle has no pelvis or no
    acetabulum can be found on it."""
    from vr_trainer.procedures.tha import PELVIS_WORDS, ThaBundleError, _mesh, _of_side, find_acetabulum
    from vr_trainer.procedures.tha_pelvis import anterior_pelvic_plane
    from vr_trainer.scenario.schema import ThaPlan

    bones = [s for s in bundle.structures if s.tissue == "bone"]
    pelves = [s for s in bones if any(w in s.name.lower() for w in PELVIS_WORDS)]
    if not pelves:
        raise ThaBundleError(f"bundle {bundle.path}: the pelvis not found (bone structures whose names hold hip, "
                             f"pelvis, ilium or innominate); the bundle has: {', '.join(bundle.names())}. Import a "
                             "pelvis (e.g. `vr-trainer import labels CT_LABELS.nii.gz --out DIR`).")
    side = _side(bundle, side, pelves)
    frame = anterior_pelvic_plane([_mesh(s) for s in pelves])
    hemi = _mesh(_of_side(pelves, side) if len(pelves) > 1 else pelves[0])  # type: ignore[arg-type]
    femurs = [s for s in bones if "femur" in s.name.lower()]
    femur_st = _of_side(femurs, side) if femurs else None  # type: ignore[arg-type]
    native, source = find_acetabulum(hemi, _mesh(femur_st) if femur_st is not None else None, frame.superior,
                                     side, ThaPlan(), bundle.landmarks)  # type: ignore[arg-type]
    size = float(np.clip(2.0 * round(native.radius_mm), 36.0, 72.0))  # the last reamer: the native diameter
    hide = [s.name for s in bundle.structures if (femur_st is not None and s.name == femur_st.name)
            or (s.tissue != "bone" and "femoral_head" in s.name.lower() and side in s.name.lower())]
    names = set(bundle.names())
    shown = [s for s in bundle.structures if s.name not in hide]
    v = np.concatenate([np.asarray(s.mesh.vertices, float) for s in shown])
    c = native.centre_mm - (v.min(0) + v.max(0)) / 2.0
    hip_w = np.array([c[2], 950.0 + c[1], -c[0]])  # supine: patient (R, A, S) -> room (-z, y, x)
    stand = -1.0 if side == "right" else 1.0  # the resident at the operated side
    zh_side = "右" if side == "right" else "左"
    out = [
        "# yaml-language-server: $schema=schema.json",
        f"# Written by `vr-trainer new-scenario --procedure tha` from the bundle {bundle_name}.",
        "# Total hip arthroplasty, direct anterior approach, supine, the femoral neck already cut: ream the",
        "# acetabulum to the planned depth along the planned cup axis, then impact the cup at the planned",
        "# radiographic inclination and anteversion (Murray) inside the safe zone (Lewinnek). The anterior pelvic",
        "# plane and the native acetabulum come from the bundle's bones when it runs.",
        "format_version: 2",
        f"id: tha_{side}_hip_{zlib.crc32(bundle_name.encode()) % 10000:04d}",
        'version: "1"',
        "title:",
        f'  en: "THA {side} hip: anterior approach, navigated cup"',
        f'  zh: "全髋关节置换 {zh_side}髋：直接前入路，导航下髋臼杯置入"',
        "procedure: tha",
        "locale: en",
        "anatomy:",
        f"  bundle: {bundle_ref}",
        f"  side: {side}",
        "  position_mm: [0, 950, 0]",
        "  patient_orientation: supine",
    ]
    if hide:
        out.append(f"  hide: [{', '.join(hide)}]  # the femoral head is resected")
    out += ["instruments:",
            f'  - {{id: reamer, kind: acetabular_reamer, label: {{en: "Acetabular reamer {size:.0f} mm", '
            f'zh: "髋臼锉 {size:.0f} mm"}}}}',
            f'  - {{id: impactor, kind: cup_impactor, label: {{en: "Cup impactor, {size:.0f} mm cup", '
            f'zh: "髋臼杯打入器（{size:.0f} mm 臼杯）"}}}}',
            "# where the C-arm and the preview look: the native acetabular centre, fitted now (seeded by the",
            f"# {source}); the procedure fits it again from the bone when it runs",
            "targets:",
            "  - id: acetabulum",
            f"    point_mm: {_v(native.centre_mm)}",
            "    tolerance_mm: 5.0",
            '    label: {en: "Acetabulum", zh: "髋臼"}',
            "# the plan: Murray's radiographic angles in the anterior pelvic plane frame, the safe zone",
            f"# (default Lewinnek's), 2 mm of reaming; reamer and cup sized to the native acetabulum "
            f"(r {native.radius_mm:.1f} mm)",
            "tha:",
            "  cup_inclination_deg: 40",
            "  cup_anteversion_deg: 15",
            "  inclination_tolerance_deg: 10",
            "  anteversion_tolerance_deg: 10",
            "  reaming_depth_mm: 2",
            f"  reamer_diameter_mm: {size:.0f}",
            f"  cup_diameter_mm: {size:.0f}",
            "  reaming_rate_mm_s: 4"]
    out.append(STEPS.rstrip("\n"))
    sacrum = next((n for n in sorted(names) if "sacrum" in n.lower()), None)
    if sacrum:
        out += ["# the instruments must stay off the sacrum (the bundle's bones; no vessels or nerves in it)",
                "risk_structures:", "  - id: sacrum", f"    structure: {sacrum}", "    margin_mm: 2.0",
                "    severity: major", '    label: {en: "Sacrum", zh: "骶骨"}']
    else:
        out += ["risk_structures: []"]
    out.append(EVENTS.rstrip("\n"))
    out.append(RUBRIC.rstrip("\n"))
    head = hip_w + np.array([-50.0, 230.0, 240.0 * stand])
    out += ["# headless runs and `vr-trainer run` without a headset: the expert autopilot, planned from the",
            "# bundle, with the resident standing at the operated side looking at the hip",
            "demo:", "  fps: 15", "  autopilot: expert", "  head:",
            f"    - {{t_s: 0, position_mm: {_v(head)}, look_at_mm: {_v(hip_w)}}}",
            f"    - {{t_s: 6, position_mm: {_v(head + np.array([80.0, -10.0, -20.0 * stand]))}, "
            f"look_at_mm: {_v(hip_w)}}}"]
    return "\n".join(out) + "\n"
