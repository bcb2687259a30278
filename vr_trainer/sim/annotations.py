"""World-anchored annotations drawn by a mentor: strokes and pins (millimetres)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Stroke:
    stroke_id: str
    points_mm: np.ndarray  # Nx3 world
    color_rgba: tuple[float, float, float, float]
    width_px: float
    created_s: float
    author: str = ""


@dataclass
class Pin:
    pin_id: str
    position_mm: np.ndarray  # 3, world
    color_rgba: tuple[float, float, float, float]
    created_s: float
    label: str = ""
    author: str = ""


@dataclass
class AnnotationSet:
    """The mentor's marks in world space. ``fade_after_s`` <= 0 keeps them forever.

    ``version`` increases on every change so a renderer re-uploads only then."""

    fade_after_s: float = 0.0
    fade_duration_s: float = 2.0
    strokes: list[Stroke] = field(default_factory=list)
    pins: list[Pin] = field(default_factory=list)
    version: int = 0
    _order: list[tuple[str, str]] = field(default_factory=list)  # (kind, id) for undo

    def add_stroke(self, stroke: Stroke) -> None:
        if len(stroke.points_mm) < 2:
            return
        self.strokes.append(stroke)
        self._order.append(("stroke", stroke.stroke_id))
        self.version += 1

    def add_pin(self, pin: Pin) -> None:
        self.pins.append(pin)
        self._order.append(("pin", pin.pin_id))
        self.version += 1

    def undo(self, author: str | None = None) -> bool:
        """Remove the newest mark (of ``author`` when given). True when one was removed."""
        for i in range(len(self._order) - 1, -1, -1):
            kind, item_id = self._order[i]
            items: list = self.strokes if kind == "stroke" else self.pins
            for j, it in enumerate(items):
                id_ = it.stroke_id if kind == "stroke" else it.pin_id
                if id_ == item_id and (author is None or it.author == author):
                    del items[j]
                    del self._order[i]
                    self.version += 1
                    return True
        return False

    def remove(self, item_id: str) -> bool:
        """Remove the stroke or pin with this id (a laser dot moving, a stroke re-sent)."""
        for j, st in enumerate(self.strokes):
            if st.stroke_id == item_id:
                del self.strokes[j]
                return self._forget(("stroke", item_id))
        for j, pin in enumerate(self.pins):
            if pin.pin_id == item_id:
                del self.pins[j]
                return self._forget(("pin", item_id))
        return False

    def _forget(self, key: tuple[str, str]) -> bool:
        self._order = [o for o in self._order if o != key]
        self.version += 1
        return True

    def clear(self) -> None:
        if self.strokes or self.pins:
            self.strokes.clear()
            self.pins.clear()
            self._order.clear()
            self.version += 1

    def alpha_at(self, created_s: float, now_s: float) -> float:
        if self.fade_after_s <= 0:
            return 1.0
        age = now_s - created_s - self.fade_after_s
        if age <= 0:
            return 1.0
        return float(max(0.0, 1.0 - age / max(self.fade_duration_s, 1e-6)))

    def expire(self, now_s: float) -> None:
        """Drop marks that have fully faded."""
        if self.fade_after_s <= 0:
            return
        keep_s = [s for s in self.strokes if self.alpha_at(s.created_s, now_s) > 0]
        keep_p = [p for p in self.pins if self.alpha_at(p.created_s, now_s) > 0]
        if len(keep_s) != len(self.strokes) or len(keep_p) != len(self.pins):
            ids = {("stroke", s.stroke_id) for s in keep_s} | {("pin", p.pin_id) for p in keep_p}
            self.strokes, self.pins = keep_s, keep_p
            self._order = [o for o in self._order if o in ids]
            self.version += 1
