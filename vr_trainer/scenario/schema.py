"""The scenario schema (pydantic). Units in field names; millimetres, seconds, degrees."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Vec3 = tuple[float, float, float]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalizedText(Strict):
    """Text shown to the resident; ``zh`` is shown when the locale is Chinese."""

    en: str
    zh: str | None = None


class AnatomyRef(Strict):
    bundle: str = Field(description="Asset bundle folder: a name under assets/ or a path relative to the scenario file")
    position_mm: Vec3 = (0.0, 950.0, 0.0)
    patient_orientation: Literal["prone", "supine", "lateral_left", "lateral_right"] = "prone"
    hide: list[str] = Field(default_factory=list, description="Structures not to show")


class InstrumentRef(Strict):
    id: str
    kind: Literal["spinal_needle", "guidewire", "dilator", "working_cannula", "endoscope",
                  "trephine", "drill", "saw_blade"]


class TargetRef(Strict):
    id: str
    structure: str | None = Field(default=None, description="A bundle structure: its centroid is the target")
    landmark: str | None = Field(default=None, description="A bundle landmark (e.g. kambin_triangle_L4_L5_left)")
    point_mm: Vec3 | None = Field(default=None, description="Patient frame (RAS) millimetres")
    tolerance_mm: float = Field(default=3.0, gt=0)


class Step(Strict):
    id: str
    prompt: LocalizedText
    instrument: str | None = None
    target: str | None = None


class HeadKey(Strict):
    t_s: float = Field(ge=0)
    position_mm: Vec3
    look_at_mm: Vec3


class ToolKey(Strict):
    t_s: float = Field(ge=0)
    tip_mm: Vec3 = Field(description="Tool tip, patient frame (RAS) millimetres")
    toward_mm: Vec3 = Field(description="A point on the handle side of the shaft, patient frame (RAS) millimetres")
    trigger: float = Field(default=0.0, ge=0, le=1)


class DemoTrack(Strict):
    """Scripted poses for headless runs and the demo: the head in the world frame (y up),
    the instrument in the patient frame (RAS, as the bundle), millimetres."""

    fps: float = Field(default=30.0, gt=0, le=240)
    head: list[HeadKey] = Field(min_length=1)
    tool: list[ToolKey] = Field(default_factory=list)
    tool_relative_to: str | None = Field(default=None, description="A target id: tool keys are offsets (RAS mm) from it")

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


class Scenario(Strict):
    format_version: Literal[1]
    id: str = Field(pattern=r"^[a-z0-9_\-]+$")
    title: LocalizedText
    procedure: Literal["pted", "tka", "tha", "other"]
    anatomy: AnatomyRef
    instruments: list[InstrumentRef] = Field(min_length=1)
    targets: list[TargetRef] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    demo: DemoTrack
    locale: Literal["en", "zh"] = "en"
