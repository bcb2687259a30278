"""The scenario schema, format 2 (pydantic). Units in field names; millimetres, seconds, degrees.

A scenario declares a whole rehearsal: the anatomy, the instruments, targets and risk
structures, ordered steps with completion conditions, events (complications and feedback),
the scoring rubric, C-arm settings and the demo track. Conditions are strings in the small
closed grammar of :mod:`vr_trainer.scenario.conditions` (``reached(kambin, 3)``,
``all(contact(root), not(step_done(dock)))`` ...), parsed and checked at load time.

``scenarios/schema.json`` is generated from these models (``vr-trainer validate --schema``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

FORMAT_VERSION = 2

Vec3 = tuple[float, float, float]
Id = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$",
                          description="An identifier: a letter, then letters, digits, '_' or '-' (at most 64)")]
Condition = Annotated[str, Field(min_length=1, max_length=4000, description=(
    "A condition in the scenario grammar, e.g. \"reached(kambin, 3)\", \"contact(exiting_root)\", "
    "\"removed(fragment) >= 80\", \"shots >= 3\", \"angle(axial) within [25, 45]\", \"elapsed_s > 600\", "
    "combined with all(...), any(...), not(...). See `vr-trainer validate --help`."))]
Severity = Literal["minor", "major", "critical"]
InstrumentKind = Literal["spinal_needle", "guidewire", "dilator", "working_cannula", "endoscope",
                         "grasping_forceps", "trephine", "drill", "saw_blade", "distal_femoral_block",
                         "tibial_block", "four_in_one_block", "spacer_block", "trial_insert", "scalpel",
                         "acetabular_reamer", "cup_impactor"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LocalizedText(Strict):
    """Text a resident reads; ``zh`` is shown when the locale is Chinese (``en`` otherwise)."""

    en: str = Field(min_length=1, max_length=2000)
    zh: str | None = Field(default=None, max_length=2000)

    def text(self, locale: str) -> str:
        return self.zh if locale == "zh" and self.zh else self.en


class PromptText(LocalizedText):
    """An event's message: shown on the in-scene panel and the mentor console and, with
    ``speak: true``, also spoken aloud in the session's locale (e.g. the patient's voice under
    local anaesthesia: "Patient: sharp pain down the leg!")."""

    speak: bool = Field(default=False, description=(
        "Also speak the message aloud (speech synthesis in the session's locale: en, or zh as Mandarin) "
        "on the machine's audio output; the run's output folder keeps each clip (audio/*.wav)"))


class AnatomyRef(Strict):
    bundle: str = Field(min_length=1, max_length=1024,
                        description="Asset bundle folder: a name under assets/ or a path relative to the scenario file")
    level: str | None = Field(default=None,
                              pattern=r"^(C[1-7]|T([1-9]|1[0-2])|L[1-6]|S1)-(C[1-7]|T([1-9]|1[0-2])|L[1-6]|S1)$",
                              description="Spinal level operated on, e.g. L4-L5 (spine procedures)")
    side: Literal["left", "right"] | None = Field(default=None, description="Side operated on (left/right)")
    position_mm: Vec3 = Field(default=(0.0, 950.0, 0.0),
                              description="Where the anatomy's centre stands in the room (y up)")
    patient_orientation: Literal["prone", "supine", "lateral_left", "lateral_right"] = "prone"
    hide: list[str] = Field(default_factory=list, description="Bundle structures not to show")


class InstrumentRef(Strict):
    id: Id
    kind: InstrumentKind
    label: LocalizedText | None = Field(default=None,
                                        description="Name shown to the resident (default: the catalogue's)")


class TargetRef(Strict):
    """A point to reach, from exactly one of: a bundle landmark, a bundle structure (its centroid),
    or a point in the patient frame."""

    id: Id
    structure: str | None = Field(default=None, description="A bundle structure: its centroid is the target")
    landmark: str | None = Field(default=None, description="A bundle landmark (e.g. kambin_triangle_L4_L5_left)")
    point_mm: Vec3 | None = Field(default=None, description="Patient frame (RAS) millimetres")
    tolerance_mm: float = Field(default=3.0, gt=0, le=200)
    label: LocalizedText | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "TargetRef":
        given = [k for k in ("structure", "landmark", "point_mm") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of structure, landmark or point_mm"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class RiskStructure(Strict):
    """A structure the instruments must stay clear of: touching it is a contact, coming
    closer than ``margin_mm`` is a near miss."""

    id: Id
    structure: str = Field(min_length=1, description="The bundle structure (mesh name)")
    margin_mm: float = Field(default=2.0, ge=0, le=100)
    severity: Severity = "major"
    label: LocalizedText | None = None


class Hint(Strict):
    after_s: float = Field(gt=0, le=86400, description="Seconds into the step before the hint shows")
    text: LocalizedText


class Step(Strict):
    id: Id
    prompt: LocalizedText
    instruments: list[Id] = Field(default_factory=list,
                                  description="Instruments this step may use (empty: any declared instrument)")
    complete_when: Condition
    time_allowance_s: float | None = Field(default=None, gt=0, le=86400,
                                           description="Expected time; past it the step is overtime (scored)")
    hints: list[Hint] = Field(default_factory=list)


class HapticEffect(Strict):
    amplitude: float = Field(default=1.0, ge=0, le=1)
    duration_s: float = Field(default=0.2, gt=0, le=5)


class OverlayEffect(Strict):
    """Highlight a structure (a risk structure id, a target id or a bundle structure) for a while."""

    structure: str = Field(min_length=1)
    rgba: tuple[float, float, float, float] = (1.0, 0.15, 0.1, 0.6)
    duration_s: float = Field(default=2.0, gt=0, le=600)


class Effect(Strict):
    """One effect of an event; give exactly one field."""

    prompt: PromptText | None = Field(default=None, description=(
        "A message on the in-scene panel and the mentor console (speak: true also says it aloud)"))
    haptic: HapticEffect | None = Field(default=None, description="A pulse on the hand holding the instrument")
    sound: Literal["alert", "warning", "success", "pain"] | None = Field(default=None, description="A sound cue")
    overlay: OverlayEffect | None = None
    fail_step: bool | None = Field(default=None, description="The current step is failed (the resident moves on)")
    critical_error: Id | None = Field(default=None, description="A critical error declared in rubric.critical_errors")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Effect":
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an effect has exactly one of prompt, haptic, sound, overlay, fail_step, critical_error"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class Event(Strict):
    """A complication or a piece of feedback: when ``when`` becomes true, the effects happen."""

    id: Id
    when: Condition
    once: bool = Field(default=False, description="Fire at most once per run (else on every rising edge)")
    cooldown_s: float = Field(default=1.0, ge=0, le=3600, description="Minimum seconds between two firings")
    effects: list[Effect] = Field(min_length=1)


class CriticalError(Strict):
    id: Id
    description: LocalizedText


class RubricMetric(Strict):
    """A metric scored linearly between the value that earns nothing and the one that earns full marks
    (either may be the larger: for times and counts less is better)."""

    metric: str = Field(min_length=1, description="A metric name from the registry (`vr-trainer metrics`)")
    weight: float = Field(gt=0, le=1000)
    full_marks_at: float
    zero_marks_at: float

    @model_validator(mode="after")
    def _distinct(self) -> "RubricMetric":
        if self.full_marks_at == self.zero_marks_at:
            raise ValueError("full_marks_at and zero_marks_at must differ")
        return self


class Rubric(Strict):
    pass_mark: float = Field(default=70.0, ge=0, le=100, description="Score (0-100) needed to pass")
    require_all_steps: bool = Field(default=True, description="A run passes only when every step was completed")
    metrics: list[RubricMetric] = Field(min_length=1)
    critical_errors: list[CriticalError] = Field(default_factory=list,
                                                 description="Errors that fail the run whatever the score")


class CArm(Strict):
    """Virtual fluoroscope geometry and shot accounting."""

    source_to_detector_mm: float = Field(default=1000.0, gt=100, le=3000)
    source_to_isocentre_mm: float = Field(default=600.0, gt=50, le=3000)
    detector_size_mm: float = Field(default=300.0, gt=10, le=1000)
    image_px: int = Field(default=256, ge=32, le=2048)
    exposure_s: float = Field(default=0.5, gt=0, le=60, description="Fluoroscopy time counted per shot")
    dose_per_shot_mgy: float = Field(default=0.1, ge=0, le=1000, description="Entrance dose estimate per shot")

    @model_validator(mode="after")
    def _isocentre_inside(self) -> "CArm":
        if self.source_to_isocentre_mm >= self.source_to_detector_mm:
            raise ValueError("source_to_isocentre_mm must be less than source_to_detector_mm")
        return self


class HeadKey(Strict):
    t_s: float = Field(ge=0, le=86400)
    position_mm: Vec3
    look_at_mm: Vec3


class ToolKey(Strict):
    t_s: float = Field(ge=0, le=86400)
    tip_mm: Vec3 = Field(description="Tool tip, patient frame (RAS) millimetres")
    toward_mm: Vec3 = Field(description="A point on the handle side of the shaft, patient frame (RAS) millimetres")
    trigger: float = Field(default=0.0, ge=0, le=1)


class DemoTrack(Strict):
    """Scripted poses for headless runs and the demo: the head in the world frame (y up),
    the instrument in the patient frame (RAS, as the bundle), millimetres."""

    fps: float = Field(default=30.0, gt=0, le=240)
    head: list[HeadKey] = Field(min_length=1, max_length=100000)
    tool: list[ToolKey] = Field(default_factory=list, max_length=100000)
    tool_relative_to: str | None = Field(default=None,
                                         description="A target id: tool keys are offsets (RAS mm) from it")
    autopilot: Literal["expert", "novice"] | None = Field(
        default=None, description="The headless demo (`vr-trainer run` with no arguments) is played by this "
        "autopilot, planned from the bundle, instead of the tool keys (the head keys still place the resident)")

    @field_validator("head", "tool")
    @classmethod
    def _sorted(cls, keys: list) -> list:
        times = [k.t_s for k in keys]
        if times != sorted(times):
            raise ValueError("keyframes must be in increasing t_s order")
        return keys

    @property
    def duration_s(self) -> float:
        return max([k.t_s for k in self.head] + [k.t_s for k in self.tool] + [0.0])


class FemoralSize(Strict):
    """One femoral component size: the distance between its posterior and anterior cuts (the box)."""

    name: str = Field(min_length=1, max_length=32)
    box_ap_mm: float = Field(gt=20, le=100, description="Posterior cut to anterior cut (mm)")


def _default_sizes() -> list[FemoralSize]:
    # an illustrative table in 3 mm steps, as many systems size (not one maker's catalogue)
    return [FemoralSize(name=str(k + 1), box_ap_mm=40.0 + 3.0 * k) for k in range(9)]


class TkaPlan(Strict):
    """Knee arthroplasty: the planned cuts (the navigation targets), the knee's soft tissue and the
    component sizes. Angles in degrees with the navigation signs of ``procedures.tka_readouts``."""

    valgus_deg: float = Field(default=6.0, ge=0, le=15,
                              description="Femoral mechanical axis from the IM axis when the bundle lacks the hip")
    distal_resection_mm: float = Field(default=9.0, ge=0, le=25, description="Distal femoral resection, "
                                       "from the more prominent distal condyle")
    distal_varus_deg: float = Field(default=0.0, ge=-10, le=10)
    distal_flexion_deg: float = Field(default=3.0, ge=-10, le=15)
    tibial_resection_mm: float = Field(default=10.0, ge=0, le=25, description="Proximal tibial resection, "
                                       "from the higher (less worn) plateau")
    tibial_varus_deg: float = Field(default=0.0, ge=-10, le=10)
    tibial_slope_deg: float = Field(default=3.0, ge=-5, le=15, description="Posterior slope of the tibial cut")
    femoral_rotation_deg: float = Field(default=0.0, ge=-10, le=10,
                                        description="External rotation of the posterior cut against the TEA")
    posterior_resection_mm: float = Field(default=9.0, ge=0, le=20,
                                          description="Posterior resection of the more prominent condyle")
    mcl_tightness_mm: float = Field(default=0.0, ge=0, le=10, description="A tight medial side (varus knee)")
    lcl_tightness_mm: float = Field(default=0.0, ge=0, le=10, description="A tight lateral side (valgus knee)")
    release_step_mm: float = Field(default=1.0, gt=0, le=5,
                                   description="Slack length one release (a pie-crusting pass) adds to a ligament")
    femoral_sizes: list[FemoralSize] = Field(default_factory=_default_sizes, min_length=1, max_length=40)
    femoral_component_mm: float = Field(default=9.0, ge=0, le=20,
                                        description="Distal and posterior thickness of the femoral component")
    tibial_tray_mm: float = Field(default=3.0, ge=0, le=10, description="Tibial baseplate thickness (under the insert)")
    insert_thickness_mm: list[float] = Field(default_factory=lambda: [9.0, 10.0, 11.0, 12.0, 14.0, 16.0],
                                             min_length=1, max_length=40)
    landmarks: dict[str, Vec3] = Field(default_factory=dict, description="Landmark overrides (bundle RAS mm), "
                                       "e.g. hip_centre_mm, medial_epicondyle_mm")


class ThaPlan(Strict):
    """Hip arthroplasty (anterior approach, supine): the planned cup orientation (Murray's radiographic
    inclination and anteversion in the anterior pelvic plane frame) with the safe zone it is scored
    against (default Lewinnek's 40 +- 10, 15 +- 10 degrees), the reaming and the component sizes."""

    cup_inclination_deg: float = Field(default=40.0, ge=20, le=70, description="Planned radiographic inclination")
    cup_anteversion_deg: float = Field(default=15.0, ge=-10, le=40, description="Planned radiographic anteversion")
    inclination_tolerance_deg: float = Field(default=10.0, gt=0, le=30,
                                             description="Half-width of the safe zone's inclination range")
    anteversion_tolerance_deg: float = Field(default=10.0, gt=0, le=30,
                                             description="Half-width of the safe zone's anteversion range")
    reaming_depth_mm: float = Field(default=2.0, ge=-5, le=15, description="Planned move of the reamed centre "
                                    "into the pelvis along the native acetabular axis")
    reamer_diameter_mm: float = Field(default=54.0, ge=36, le=72, description="Last (final) reamer size")
    cup_diameter_mm: float = Field(default=54.0, ge=36, le=72, description="Acetabular cup outer diameter")
    reaming_rate_mm_s: float = Field(default=4.0, gt=0, le=50,
                                     description="How fast a running reamer advances through bone")
    landmarks: dict[str, Vec3] = Field(default_factory=dict, description="Landmark overrides (bundle RAS mm): "
                                       "hip_centre_mm seeds the native acetabulum's sphere fit")


class Scenario(Strict):
    format_version: Literal[2]
    id: str = Field(pattern=r"^[a-z0-9_\-]{1,64}$")
    version: str = Field(default="1", max_length=64, description="The scenario's own version (for reports)")
    author: str | None = Field(default=None, max_length=200)
    title: LocalizedText
    description: LocalizedText | None = None
    procedure: Literal["pted", "tka", "tha", "other"]
    locale: Literal["en", "zh"] = "en"
    anatomy: AnatomyRef
    instruments: list[InstrumentRef] = Field(min_length=1, max_length=64)
    targets: list[TargetRef] = Field(default_factory=list, max_length=256)
    risk_structures: list[RiskStructure] = Field(default_factory=list, max_length=256)
    steps: list[Step] = Field(min_length=1, max_length=256)
    events: list[Event] = Field(default_factory=list, max_length=256)
    rubric: Rubric
    carm: CArm = Field(default_factory=CArm)
    demo: DemoTrack
    tka: TkaPlan | None = Field(default=None, description="Knee arthroplasty plan (procedure tka)")
    tha: ThaPlan | None = Field(default=None, description="Hip arthroplasty plan (procedure tha)")

    _source_dir: Path | None = PrivateAttr(default=None)  # the folder the file was loaded from, for bundle lookup
    _source_map: object = PrivateAttr(default=None)  # loader.SourceMap: where each value is in the file
