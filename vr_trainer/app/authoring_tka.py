"""`vr-trainer new-scenario --procedure tka`: the gap-balanced knee arthroplasty scenario for any bundle
with a femur and a tibia (the workflow of :mod:`vr_trainer.procedures.tka_workflow`).

Everything the scenario needs comes from the bundle's bones when it runs (landmarks, ligaments,
planned cuts); the file holds the plan's targets (the defaults of a native knee: 9 mm distal,
10 mm tibial and 9 mm posterior resection), the side, the instruments and steps, and the risk
structures the bundle has (the popliteal artery, MCL and patellar tendon that
``python -m vr_trainer.procedures.tka_bundle DIR --no-assemble`` derives from the bones).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

STEPS = """\
steps:
  - id: distal_block
    instruments: [distal_block]
    complete_when: "action(pinned_distal_femoral_block)"
    time_allowance_s: 40
    prompt:
      en: "Distal femoral block: 0° varus/valgus, 3° flexion, 9 mm resection; pull the trigger to pin it"
      zh: "股骨远端截骨导板：内外翻 0°，屈曲 3°，截骨 9 mm；扣扳机固定"
    hints:
      - after_s: 20
        text:
          en: "Tilt the block until the readout shows 0° varus/valgus and 3° flexion"
          zh: "调整导板直到读数为内外翻 0°、屈曲 3°"
  - id: distal_cut
    instruments: [saw]
    complete_when: "action(cut_distal_femur)"
    time_allowance_s: 40
    prompt:
      en: "Cut the distal femur through the slot: sweep the whole section"
      zh: "经导板槽截股骨远端：扫过整个截面"
    hints:
      - after_s: 20
        text:
          en: "Keep the trigger pulled and sweep the blade across the whole bone, side to side"
          zh: "扣住扳机，左右扫过整个骨面"
  - id: tibial_block
    instruments: [tibial_block]
    complete_when: "action(pinned_tibial_block)"
    time_allowance_s: 40
    prompt:
      en: "Tibial block: 0° varus/valgus, 3° posterior slope, 10 mm below the higher plateau"
      zh: "胫骨截骨导板：内外翻 0°，后倾 3°，高侧平台下 10 mm"
    hints:
      - after_s: 20
        text:
          en: "The slope is the block's tilt front to back; the depth is measured from the higher plateau"
          zh: "后倾为导板前后倾斜；深度从较高平台量起"
  - id: tibial_cut
    instruments: [saw]
    complete_when: "action(cut_proximal_tibia)"
    time_allowance_s: 40
    prompt:
      en: "Cut the proximal tibia; stop at the posterior cortex"
      zh: "截胫骨近端；止于后侧皮质"
    hints:
      - after_s: 20
        text:
          en: "Go in from the front and a little medial; stop before the blade leaves the back of the tibia"
          zh: "从前内侧进入；锯片穿出胫骨后缘前停止"
  - id: extension_gap
    instruments: [spacer]
    complete_when: "action(measured_extension_gap)"
    time_allowance_s: 30
    prompt:
      en: "Spacer block in extension: read the medial and lateral gaps"
      zh: "伸直位放入间隙测块：读取内外侧间隙"
    hints:
      - after_s: 20
        text:
          en: "Put the spacer between the cut surfaces with the knee straight and pull the trigger"
          zh: "伸直位将测块放入截骨面之间并扣扳机"
  - id: balance
    instruments: [scalpel, spacer]
    complete_when: "action(balanced_extension)"
    time_allowance_s: 60
    prompt:
      en: "Balance the extension gap: release the tight side's collateral ligament step by step"
      zh: "平衡伸直间隙：逐步松解紧张侧副韧带"
    hints:
      - after_s: 20
        text:
          en: "Touch the tight side's collateral ligament with the scalpel: each pull releases 1 mm"
          zh: "用手术刀触及紧张侧副韧带：每扣一次松解 1 mm"
  - id: four_in_one
    instruments: [four_in_one]
    complete_when: "action(pinned_four_in_one_block)"
    time_allowance_s: 40
    prompt:
      en: "4-in-1 block on the distal cut: rotation parallel to the transepicondylar axis"
      zh: "四合一截骨导板置于远端截面：旋转与通髁线平行"
    hints:
      - after_s: 20
        text:
          en: "Turn the block on the cut surface until the rotation readout shows 0° to the TEA"
          zh: "在截骨面上旋转导板直到相对通髁线为 0°"
  - id: femoral_cuts
    instruments: [saw]
    complete_when: "action(cut_four_in_one)"
    time_allowance_s: 120
    prompt:
      en: "Anterior, posterior and both chamfer cuts through the 4-in-1 block"
      zh: "经四合一导板完成前、后及两个斜面截骨"
    hints:
      - after_s: 20
        text:
          en: "Each slot is one pass: anterior, posterior, then the two chamfers"
          zh: "每个槽一次截骨：前、后，再两个斜面"
  - id: flexion_gap
    instruments: [spacer]
    complete_when: "action(measured_flexion_gap)"
    time_allowance_s: 30
    prompt:
      en: "Spacer block at 90° flexion: the flexion gap should match the extension gap"
      zh: "屈膝 90° 放入间隙测块：屈曲间隙应与伸直间隙相等"
    hints:
      - after_s: 20
        text:
          en: "With the knee at 90°, the spacer should sit as snugly as in extension"
          zh: "屈膝 90° 时测块应与伸直位同样松紧"
  - id: trial
    instruments: [trial]
    complete_when: "action(trial_fitted)"
    time_allowance_s: 30
    prompt:
      en: "Trial insert: the thickest that the gaps take"
      zh: "试模垫片：间隙可容纳的最厚者"
    hints:
      - after_s: 20
        text:
          en: "Put the trial insert in the joint and pull the trigger"
          zh: "将试模垫片放入关节并扣扳机"
"""

RUBRIC = """\
rubric:
  pass_mark: 70
  metrics:
    - {metric: steps_completed_pct, weight: 4, full_marks_at: 100, zero_marks_at: 50}
    - {metric: total_time_s, weight: 1, full_marks_at: 240, zero_marks_at: 600}
    - {metric: distal_varus_error_deg, weight: 2, full_marks_at: 0.5, zero_marks_at: 3}
    - {metric: distal_flexion_error_deg, weight: 1, full_marks_at: 0.5, zero_marks_at: 4}
    - {metric: distal_resection_error_mm, weight: 1, full_marks_at: 0.5, zero_marks_at: 3}
    - {metric: tibial_varus_error_deg, weight: 2, full_marks_at: 0.5, zero_marks_at: 3}
    - {metric: tibial_slope_error_deg, weight: 1, full_marks_at: 0.5, zero_marks_at: 4}
    - {metric: tibial_resection_error_mm, weight: 1, full_marks_at: 0.5, zero_marks_at: 3}
    - {metric: femoral_rotation_error_deg, weight: 2, full_marks_at: 1, zero_marks_at: 5}
    - {metric: extension_gap_imbalance_mm, weight: 2, full_marks_at: 1, zero_marks_at: 4}
    - {metric: flexion_extension_mismatch_mm, weight: 1, full_marks_at: 1, zero_marks_at: 4}
"""

RISKS = {  # bundle structure -> (id, severity, margin, en, zh)
    "popliteal_artery_distal": ("popliteal_artery", "critical", 2.0, "Popliteal artery (behind the tibia)",
                                "腘动脉（胫骨后方）"),
    "popliteal_artery_proximal": ("popliteal_artery_femoral", "critical", 2.0, "Popliteal artery (behind the femur)",
                                  "腘动脉（股骨后方）"),
    "popliteal_artery": ("popliteal_artery", "critical", 2.0, "Popliteal artery", "腘动脉"),
    "mcl": ("mcl", "major", 1.0, "Medial collateral ligament", "内侧副韧带"),
    "patellar_tendon": ("patellar_tendon", "major", 1.0, "Patellar tendon", "髌腱"),
}


def _v(p: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(x):.1f}" for x in p) + "]"


def render_tka_workflow(bundle: Any, bundle_ref: str, side: str | None, bundle_name: str) -> str:
    """The scenario text; raises ValueError (as the TKA model would) when the bundle has no femur and tibia."""
    from vr_trainer.app.authoring_plans import declared_side
    from vr_trainer.procedures.tka import TkaBundleError, _find
    from vr_trainer.procedures.tka_landmarks import femur_landmarks, tibia_landmarks

    femur_st, tibia_st = _find(bundle.structures, "femur"), _find(bundle.structures, "tibia")
    if femur_st is None or tibia_st is None:
        raise TkaBundleError(f"bundle {bundle.path}: the femur and tibia not found (bone structures whose names hold "
                             f"femur and tibia); the bundle has: {', '.join(bundle.names())}. Import a knee with "
                             "both bones (e.g. `vr-trainer import mesh Femur.stl Tibia.stl --out DIR`).")
    side = declared_side(bundle, side)
    femur = femur_landmarks(femur_st.mesh, side=side)  # type: ignore[arg-type]
    side = side or femur.side  # from the geometry (the femoral head, else the condyles)
    tibia = tibia_landmarks(tibia_st.mesh, side=femur.side)
    names = set(bundle.names())
    patella = next((n for n in names if n.lower() == "patella"), None)
    shown = [s for s in bundle.structures if s.name != patella]
    v = np.concatenate([np.asarray(s.mesh.vertices, float) for s in shown])
    centre = (v.min(0) + v.max(0)) / 2.0
    knee = 0.5 * (femur.knee_centre_mm + tibia.knee_centre_mm) - centre
    knee_w = np.array([knee[2], 950.0 + knee[1], -knee[0]])  # supine: patient (R, A, S) -> room (-z, y, x)
    stand = -1.0 if side == "right" else 1.0  # the resident at the operated side
    zh_side = "右" if side == "right" else "左"
    risks = [(name, *RISKS[name]) for name in sorted(names) if name in RISKS]
    out = [
        "# yaml-language-server: $schema=schema.json",
        f"# Written by `vr-trainer new-scenario --procedure tka` from the bundle {bundle_name}.",
        "# Gap-balanced total knee arthroplasty: navigated distal femoral and proximal tibial cuts, the",
        "# extension gap balanced by releases, 4-in-1 femoral cuts at the planned rotation (in flexion),",
        "# flexion gap and trial. Landmarks, ligaments and the planned cuts come from the bundle's bones when",
        "# it runs; the plan below holds a native knee's targets (edit them for this patient).",
        "format_version: 2",
        f"id: tka_{side}_knee_{zlib.crc32(bundle_name.encode()) % 10000:04d}",
        'version: "1"',
        "title:",
        f'  en: "TKA {side} knee: gap-balanced, navigated"',
        f'  zh: "全膝关节置换 {zh_side}膝：导航下间隙平衡"',
        "procedure: tka",
        "locale: en",
        "anatomy:",
        f"  bundle: {bundle_ref}",
        f"  side: {side}",
        "  position_mm: [0, 950, 0]",
        "  patient_orientation: supine",
    ]
    if patella:
        out.append(f"  hide: [{patella}]  # everted through the medial parapatellar arthrotomy")
    out += ["instruments:",
            "  - {id: distal_block, kind: distal_femoral_block}",
            "  - {id: saw, kind: saw_blade}",
            "  - {id: tibial_block, kind: tibial_block}",
            "  - {id: spacer, kind: spacer_block}",
            "  - {id: scalpel, kind: scalpel}",
            "  - {id: four_in_one, kind: four_in_one_block}",
            "  - {id: trial, kind: trial_insert}",
            "# the plan (navigation targets; degrees with the navigation signs, resections in mm) and the",
            "# knee's soft tissue: a tight medial side (a varus knee) needs a release to balance",
            "tka:",
            "  distal_resection_mm: 9",
            "  distal_varus_deg: 0",
            "  distal_flexion_deg: 3",
            "  tibial_resection_mm: 10",
            "  tibial_varus_deg: 0",
            "  tibial_slope_deg: 3",
            "  femoral_rotation_deg: 0",
            "  posterior_resection_mm: 9",
            "  mcl_tightness_mm: 3",
            "  release_step_mm: 1"]
    out.append(STEPS.rstrip("\n"))
    if risks:
        out.append("risk_structures:")
        for name, rid, sev, margin, en, zh in risks:
            out += [f"  - id: {rid}", f"    structure: {name}", f"    margin_mm: {margin}", f"    severity: {sev}",
                    f'    label: {{en: "{en}", zh: "{zh}"}}']
        ids = [r[1] for r in risks]
        when = f'"all(holding(saw), any({", ".join(f"contact({i})" for i in ids)}))"'
        out += ["events:", "  - id: saw_on_soft_tissue", f"    when: {when}",
                "    cooldown_s: 2", "    effects:", "      - prompt:",
                '          en: "The saw is on soft tissue at risk: keep the blade inside the bone"',
                '          zh: "锯片触及危险软组织：锯片保持在骨内"',
                "      - haptic: {amplitude: 0.8, duration_s: 0.2}",
                "      - sound: alert"]
    else:
        out += ["# the bundle has no soft tissue at risk: derive it with",
                f"# `python -m vr_trainer.procedures.tka_bundle {bundle_ref} --no-assemble`",
                "risk_structures: []", "events:"]
    out += ["  - id: cut_made", '    when: "any(action(cut_distal_femur), action(cut_proximal_tibia))"',
            "    effects:", "      - prompt:", '          en: "Cut made: the readout now shows the executed cut"',
            '          zh: "截骨完成：读数显示实际截骨"', "      - haptic: {amplitude: 0.5, duration_s: 0.1}"]
    out.append(RUBRIC.rstrip("\n"))
    if risks:
        out.append("    - {metric: risk_contacts, weight: 3, full_marks_at: 0, zero_marks_at: 1}")
    head = knee_w + np.array([0.0, 300.0, 350.0 * stand])
    out += ["# headless runs and `vr-trainer run` without a headset: the expert autopilot, planned from the",
            "# bundle, with the resident standing at the operated side looking at the knee",
            "demo:", "  fps: 15", "  autopilot: expert", "  head:",
            f"    - {{t_s: 0, position_mm: {_v(head)}, look_at_mm: {_v(knee_w)}}}",
            f"    - {{t_s: 6, position_mm: {_v(head + np.array([60.0, -20.0, 0.0]))}, look_at_mm: {_v(knee_w)}}}"]
    return "\n".join(out) + "\n"
