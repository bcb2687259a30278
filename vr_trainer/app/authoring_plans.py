"""What `vr-trainer new-scenario` puts in a scenario, derived from a bundle's own geometry.

One function per procedure turns a loaded bundle (and the level and side asked for) into a
:class:`ScenarioPlan`: targets found by landmark or computed from meshes, risk structures found
by the bundle's structure names, steps, events and the rubric. Nothing here knows the shipped
bundles' coordinates; a bundle that lacks what a procedure needs gets an :class:`AuthoringError`
naming what is missing and what to do. Units: millimetres in the patient RAS frame
(+x right, +y anterior, +z superior), seconds, degrees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vr_trainer.anatomy.bundle import Bundle

SPINE_LEVELS = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", *(f"T{i}" for i in range(1, 13)),
                "L1", "L2", "L3", "L4", "L5", "L6", "S1")
APPROACH_MM = 150.0  # where the demo instrument starts, along the approach, from the first target


class AuthoringError(ValueError):
    """The bundle or the options cannot make the scenario asked for; the message says what to do."""


def unit(v: Any) -> np.ndarray:
    a = np.asarray(v, float)
    n = float(np.linalg.norm(a))
    if n < 1e-9:
        raise AuthoringError("a direction of zero length in the bundle's landmarks; re-run the import")
    return a / n


@dataclass
class TargetPlan:
    id: str
    source: str  # "landmark" | "structure" | "point_mm"
    value: Any  # landmark name, structure name or (3,) mm
    point_ras_mm: np.ndarray
    tolerance_mm: float
    label: tuple[str, str]  # en, zh
    comment: str


@dataclass
class RiskPlan:
    id: str
    structure: str
    margin_mm: float
    severity: str
    label: tuple[str, str]
    comment: str


@dataclass
class StepPlan:
    id: str
    instruments: list[str]
    complete_when: str
    time_allowance_s: float
    prompt: tuple[str, str]
    hints: list[tuple[float, str, str]]
    comment: str


@dataclass
class EventPlan:
    id: str
    when: str
    effects: list[str]  # YAML flow items, one effect each
    comment: str
    once: bool = False
    cooldown_s: float = 2.0


@dataclass
class ScenarioPlan:
    procedure: str
    title: tuple[str, str]
    description: tuple[str, str]
    side: str | None
    level: str | None
    orientation: str
    instruments: list[tuple[str, str]]  # id, kind
    targets: list[TargetPlan]
    risks: list[RiskPlan]
    steps: list[StepPlan]
    events: list[EventPlan]
    critical_errors: list[tuple[str, str, str]]  # id, en, zh
    approach_ras: np.ndarray  # unit vector from the first target towards where the instrument comes from
    stand_ras: np.ndarray  # where the resident stands, seen from the patient (unit, RAS)
    hold_s: float = 0.0  # the demo holds the instrument on the target this long after reaching it
    hide: list[str] = field(default_factory=list)
    extra_rubric: list[tuple[str, float, float, float, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _zh_side(side: str) -> str:
    return "左" if side == "left" else "右"


def _missing(bundle: Bundle, what: str, looked_for: list[str], todo: str) -> AuthoringError:
    have = ", ".join(bundle.names())
    return AuthoringError(f"bundle {bundle.path}: {what} not found (looked for {', '.join(looked_for)}); "
                          f"the bundle has: {have}. {todo}")


def _structure(bundle: Bundle, names: list[str], tissue: str | None = None) -> str | None:
    have = bundle.names()
    for n in names:
        if n in have:
            return n
    if tissue is not None:
        for s in bundle.structures:
            if s.tissue == tissue:
                return s.name
    return None


def _vertices(bundle: Bundle, name: str) -> np.ndarray:
    return np.asarray(bundle[name].mesh.vertices, float)


def clear_approach(target_mm: np.ndarray, candidates: list[np.ndarray], obstacles: list[np.ndarray],
                   clearance_mm: float, length_mm: float = APPROACH_MM) -> np.ndarray:
    """The first candidate direction whose straight path from ``target_mm`` out to ``length_mm``
    keeps ``clearance_mm`` from every obstacle's vertices ((n, 3) mm each); else the clearest one."""
    from scipy.spatial import cKDTree

    trees = [cKDTree(o) for o in obstacles if len(o)]
    best, best_gap = candidates[0], -np.inf
    s = np.arange(clearance_mm + 3.0, length_mm, 1.0)
    for c in candidates:
        d = unit(c)
        pts = target_mm[None, :] + s[:, None] * d[None, :]
        gap = min((float(t.query(pts)[0].min()) for t in trees), default=np.inf)
        if gap >= clearance_mm:
            return d
        if gap > best_gap:
            best, best_gap = d, gap
    return unit(best)


def parse_level(level: str) -> tuple[str, str]:
    m = re.fullmatch(r"([CTLS][0-9]{1,2})-([CTLS][0-9]{1,2})", level.strip().upper())
    if not m or m.group(1) not in SPINE_LEVELS or m.group(2) not in SPINE_LEVELS:
        raise AuthoringError(f"--level {level!r} is not a spinal level; write it like L4-L5")
    upper, lower = m.group(1), m.group(2)
    adjacent = SPINE_LEVELS.index(lower) == SPINE_LEVELS.index(upper) + 1 or (upper, lower) == ("L5", "S1")
    if not adjacent:  # L5-S1 is adjacent too (L6 exists only in a lumbarised spine)
        raise AuthoringError(f"--level {level}: give two adjacent vertebrae, upper first (e.g. L4-L5)")
    return upper, lower


def _kambin_landmarks(bundle: Bundle) -> dict[tuple[str, str], str]:
    """(level 'L4-L5', side) -> landmark name, from the landmarks' own level/side fields."""
    out: dict[tuple[str, str], str] = {}
    for name, lm in bundle.landmarks.items():
        if not name.startswith("kambin") or not isinstance(lm, dict):
            continue
        lv, sd = lm.get("level"), lm.get("side")
        if isinstance(lv, str) and sd in ("left", "right") and ("incenter_mm" in lm or "centroid_mm" in lm):
            out[(lv.replace("_", "-"), sd)] = name
    return out


def _pted_steps(level: str, side: str, sd_zh: str, lower: str, coronal_deg: float, how: str, disc: str | None,
                t2: TargetPlan) -> list[StepPlan]:
    """The operation's stages (what the PTED autopilot plans and the PTED model simulates): the needle
    into Kambin's triangle, the guidewire into the disc, dilation, the cannula docked in the foramen
    and confirmed on a shot, the endoscope, and (with a herniation) the fragment taken out."""
    wire_done = f"all(holding(guidewire), inside({disc}))" if disc else "all(holding(guidewire), distance(kambin) < 14)"
    steps = [
        StepPlan("needle_to_kambin", ["needle"], "reached(kambin)", 90,
                 (f"Advance the 18G needle into Kambin's triangle ({level}, {side}); check it on AP and lateral shots",
                  f"18G 穿刺针进入 {level} {sd_zh}侧 Kambin 三角；正侧位透视确认"),
                 [(40, f"Aim about {coronal_deg:.0f} degrees from the coronal plane, just above the {lower} "
                       "superior articular process",
                   f"与冠状面约成 {coronal_deg:.0f} 度，紧贴 {lower} 上关节突上方进针")],
                 f"the needle tip within the target's tolerance of Kambin's triangle (approach: {how})"),
        StepPlan("guidewire", ["guidewire"], wire_done, 30,
                 ("Pass the guidewire through the needle into the disc", "经穿刺针置入导丝至椎间盘内"),
                 [(15, "Press the primary button to exchange the needle: the guidewire follows its line",
                   "按主按钮更换器械：导丝沿穿刺针轨迹进入")],
                 "the guidewire (which replaces the needle on its line) in the disc"),
        StepPlan("dilate", ["dilator"], "all(holding(dilator), distance(kambin) < 14)", 40,
                 ("Dilate over the guidewire down to the foramen", "沿导丝逐级扩张至椎间孔"),
                 [(20, "The dilator slides on the guidewire: push it down to the foramen",
                   "扩张器沿导丝滑动：推至椎间孔")],
                 "the dilator, sliding on the guidewire, within 14 mm of Kambin's triangle"),
        StepPlan("dock_cannula", ["cannula"],
                 "all(holding(cannula), distance(kambin) < 14, any(action(carm_lateral), action(carm_ap)))", 45,
                 ("Dock the working cannula in the foramen (bevel toward the exiting root) and confirm it on a shot",
                  "工作套管置于椎间孔（斜面朝向出口神经根），透视确认"),
                 [(25, "Follow the needle's trajectory over the dilator; one lateral shot shows the depth",
                   "沿扩张器保持穿刺轨迹；侧位一张即可确认深度")],
                 "the cannula docked in the foramen and a shot taken of it (Feng 2024: shots for the sheath)"),
        StepPlan("endoscope", ["scope"], "all(holding(scope), distance(kambin) < 14)", 30,
                 ("Insert the endoscope through the cannula", "经工作套管置入内镜"),
                 [(15, "Its picture appears in the corner of your view and on the endoscope monitor",
                   "内镜画面显示在视野一角和内镜监视器上")],
                 "the endoscope in the cannula (its picture shows)"),
    ]
    if t2.id == "fragment":
        steps.append(StepPlan("remove_fragment", ["forceps"], "all(holding(forceps), removed(fragment) >= 80)", 60,
                              ("Remove the herniated fragment with the grasping forceps, piece by piece, under "
                               "endoscopic view", "内镜直视下用髓核钳分块摘除突出髓核"),
                              [(30, "Bring the forceps out of the scope onto the fragment and press the trigger "
                                    "to grasp", "髓核钳伸出内镜对准髓核，按扳机夹取")],
                              "80 % of the fragment's volume taken out"))
    return steps


def plan_pted(bundle: Bundle, level: str | None, side: str | None) -> ScenarioPlan:
    kambins = _kambin_landmarks(bundle)
    if not kambins:
        raise AuthoringError(f"bundle {bundle.path} has no Kambin triangle landmarks (a manifest landmark "
                             "'kambin_triangle_<upper>_<lower>_<side>' with level, side and incenter_mm), so a "
                             "PTED scenario has no target; import a lumbar spine whose derivation adds them "
                             "(`vr-trainer import ... --spine`, planned) or add the landmark to manifest.json")
    levels = sorted({lv for lv, _ in kambins})
    if level is None:
        if len(levels) != 1:
            raise AuthoringError(f"bundle {bundle.path} has Kambin landmarks at {', '.join(levels)}; "
                                 "choose one with --level")
        level = levels[0]
    upper, lower = parse_level(level)
    level = f"{upper}-{lower}"
    key = f"{upper}_{lower}"
    fragment = _structure(bundle, [f"herniation_{key}"])
    disc = _structure(bundle, [f"disc_{key}"])
    if fragment is None and disc is None:
        raise _missing(bundle, f"the disc or herniation of {level}", [f"herniation_{key}", f"disc_{key}"],
                       "Import a segmentation that labels the disc, or choose another --level.")
    frag_side = None
    if fragment is not None:
        mid_x = float(_vertices(bundle, disc).mean(0)[0]) if disc else 0.0
        dx = float(_vertices(bundle, fragment).mean(0)[0]) - mid_x
        frag_side = "left" if dx < -1.0 else "right" if dx > 1.0 else None
    if side is None:
        sides = sorted({sd for lv, sd in kambins if lv == level})
        side = frag_side or (sides[0] if len(sides) == 1 else None)
        if side is None:
            raise AuthoringError(f"choose the approach side with --side left|right (Kambin landmarks at {level}: "
                                 f"{', '.join(sides) or 'none'})")
    lm_name = kambins.get((level, side))
    if lm_name is None:
        have = ", ".join(f"{lv} {sd}" for lv, sd in sorted(kambins))
        raise AuthoringError(f"bundle {bundle.path} has no Kambin triangle landmark for {level} {side} "
                             f"(it has: {have}); choose one of those with --level/--side")
    lm = bundle.landmarks[lm_name]
    k_pt = np.asarray(lm.get("incenter_mm") or lm["centroid_mm"], float)
    exiting = f"nerve_root_{upper}_exiting_{side}"
    traversing = f"nerve_root_{lower}_traversing_{side}"
    roots = [n for n in (exiting, traversing) if n not in bundle.names()]
    if roots:
        nerves = [s.name for s in bundle.by_tissue("nerve")]
        raise AuthoringError(
            f"bundle {bundle.path} lacks the {side} nerve roots of {level}: {', '.join(roots)} "
            f"(its nerve structures: {', '.join(nerves) or 'none'}). A PTED scenario needs the exiting and "
            "traversing roots as risk structures: derive them with `vr-trainer import ... --spine` (planned) or "
            "import a segmentation that labels them under these names, then run new-scenario again")
    dura = _structure(bundle, ["dural_sac", "dura", "thecal_sac"], tissue="dura")
    if dura is None:
        raise _missing(bundle, "the dural sac", ["dural_sac", "a structure of tissue 'dura'"],
                       "Import a segmentation that labels the thecal sac (tissue dura).")
    if "approach_direction" in lm:
        approach = unit(lm["approach_direction"])
        how = f"the landmark's approach_direction {np.round(approach, 3).tolist()}"
    else:  # posterolateral, 30 degrees from the coronal plane, away from the midline
        approach = unit([(-1.0 if side == "left" else 1.0) * np.cos(np.radians(30)), -np.sin(np.radians(30)), 0.0])
        how = "30 deg posterolateral (the landmark gives no approach_direction)"
    coronal_deg = float(np.degrees(np.arcsin(abs(approach[1]))))
    sd_zh = _zh_side(side)
    if fragment is not None and frag_side in (None, side):
        t2 = TargetPlan("fragment", "structure", fragment, _vertices(bundle, fragment).mean(0), 4.0,
                        ("Herniated fragment", "突出髓核"), f"the herniation {fragment} (its centroid)")
    else:
        why = (f"the herniation {fragment} lies on the {frag_side}" if fragment
               else f"the bundle has no herniation at {level}")
        assert disc is not None
        t2 = TargetPlan("disc", "structure", disc, _vertices(bundle, disc).mean(0), 4.0,
                        (f"Disc {level}", f"{level} 椎间盘"), f"the disc {disc} (its centroid): {why}")
    t2_en = "herniated fragment" if t2.id == "fragment" else f"{level} disc"
    plan = ScenarioPlan(
        procedure="pted",
        title=(f"PTED {level}, {side} transforaminal approach", f"经皮椎间孔镜 {level} {sd_zh}侧入路"),
        description=(f"Puncture Kambin's triangle at {level} from the {side} without touching the exiting {upper} "
                     f"or traversing {lower} root, confirm with a fluoroscopy shot, then dock the working cannula on "
                     f"the {t2_en}.",
                     f"经{sd_zh}侧穿刺 {level} Kambin 三角，避免触及 {upper} 出口神经根和 {lower} 走行神经根，"
                     f"透视确认后将工作套管置于{t2.label[1]}处。"),
        side=side, level=level, orientation="prone",
        instruments=[("needle", "spinal_needle"), ("guidewire", "guidewire"), ("dilator", "dilator"),
                     ("cannula", "working_cannula"), ("scope", "endoscope")]
        + ([("forceps", "grasping_forceps")] if t2.id == "fragment" else []),
        targets=[TargetPlan("kambin", "landmark", lm_name, k_pt, 3.0,
                            (f"Kambin's triangle {level} ({side})", f"{level} Kambin 三角（{sd_zh}）"),
                            f"the bundle's landmark {lm_name} (its incentre)"), t2],
        risks=[RiskPlan("exiting_root", exiting, 2.0, "critical", (f"Exiting root {upper} ({side})",
                        f"{upper} 出口神经根（{sd_zh}）"), "runs over the top of Kambin's triangle"),
               RiskPlan("traversing_root", traversing, 2.0, "critical", (f"Traversing root {lower} ({side})",
                        f"{lower} 走行神经根（{sd_zh}）"), "the medial border of the triangle"),
               RiskPlan("dural_sac", dura, 2.0, "critical", ("Dural sac", "硬膜囊"), "medial to the working zone")],
        steps=_pted_steps(level, side, sd_zh, lower, coronal_deg, how, disc, t2),
        events=[
            EventPlan("root_contact", "any(contact(exiting_root), contact(traversing_root))",
                      ['prompt: {en: "Patient: sharp pain down the leg! The instrument is on a nerve root; withdraw '
                       'and redirect.", zh: "患者：腿部剧痛！器械触及神经根，请退针并调整方向。"}',
                       "haptic: {amplitude: 1.0, duration_s: 0.3}", "sound: pain"],
                      "touching either root: the patient (awake, local anaesthesia) feels it"),
            EventPlan("root_close", "all(any(near(exiting_root), near(traversing_root)), "
                      "not(any(contact(exiting_root), contact(traversing_root))))",
                      ['prompt: {en: "Within 2 mm of a nerve root", zh: "距神经根不足 2 mm"}',
                       "haptic: {amplitude: 0.3, duration_s: 0.1}"],
                      "closer than the roots' margin without touching: a warning", cooldown_s=5.0),
            EventPlan("root_penetration", "any(inside(exiting_root), inside(traversing_root))",
                      ['prompt: {en: "The instrument is inside a nerve root: root injury", '
                       'zh: "器械进入神经根：神经根损伤"}', "sound: alert", "critical_error: root_injury"],
                      "inside a root: a critical error, the run fails", once=True),
            EventPlan("bone_contact", "action(bone_contact)",
                      ['prompt: {en: "Bone: the needle is on a facet or a pedicle; withdraw a little and redirect", '
                       'zh: "触及骨质：针尖抵在关节突或椎弓根上，稍退针后调整方向"}'],
                      "the tip met bone and was stopped there (the simulation's bone stop)", cooldown_s=3.0),
            EventPlan("dural_breach", "inside(dural_sac)",
                      ['prompt: {en: "The instrument is inside the dural sac: cerebrospinal fluid leak", '
                       'zh: "器械进入硬膜囊：脑脊液漏"}', "sound: alert", "critical_error: dural_tear"],
                      "inside the dural sac: a critical error, the run fails", once=True),
        ],
        critical_errors=[("root_injury", "Nerve root injury: an instrument entered a nerve root",
                          "神经根损伤：器械进入神经根"),
                         ("dural_tear", "Dural tear: an instrument entered the dural sac", "硬膜撕裂：器械进入硬膜囊")],
        approach_ras=approach, stand_ras=unit([approach[0], 0.0, 0.0]) if abs(approach[0]) > 1e-6 else unit([-1, 0, 0]),
        extra_rubric=[("fluoro_shots", 1, 10, 40, "fewer shots, less radiation: 10 or fewer earn full marks")],
    )
    return plan


def declared_side(bundle: Bundle, side: str | None) -> str | None:
    """The operated side: --side, else the manifest's landmarks.side, else None (the caller decides from geometry)."""
    if side in ("left", "right"):
        return side
    lm_side = bundle.landmarks.get("side")
    return str(lm_side) if lm_side in ("left", "right") else None
