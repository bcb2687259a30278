"""What a mentor may watch besides the resident's eyes: the C-arm monitor and the endoscope.

Both become views in the expert console's view selector (:class:`remote.views.StreamView`, handed
to the trainee bridge before viewers join). The pictures are copied on the frame-loop thread (the
only one that may touch GL) into a slot the network thread reads: the C-arm's latest radiograph
from the shot service, the endoscope's picture a few times a second while the scope is in the
cannula. Neither lies in the mirror picture, so neither can be drawn on (strokes go on the eyes).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

ENDOSCOPE_EVERY_N_FRAMES = 3  # about 10-30 pictures a second for the mentor, one read-back each


class PictureSlot:
    """The latest picture, written by the frame loop, read by the network thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rgb: np.ndarray | None = None

    def put(self, rgb: np.ndarray | None) -> None:
        with self._lock:
            self._rgb = None if rgb is None else np.ascontiguousarray(rgb)

    def get(self) -> np.ndarray | None:
        with self._lock:
            return self._rgb


class EndoscopeFeed:
    """Phase 6: the endoscope's picture into ``slot`` every few frames while it is in use."""

    def __init__(self, scene: Any, renderer: Any, slot: PictureSlot) -> None:
        self.scene, self.renderer, self.slot = scene, renderer, slot

    def __call__(self, state: Any, frame: Any) -> None:
        proc = self.scene.procedure
        if not hasattr(proc, "endoscope_pose") or frame.index % ENDOSCOPE_EVERY_N_FRAMES:
            return
        if proc.endoscope_pose(state) is None:
            return
        self.slot.put(self.renderer.endoscope_image())


def mentor_views(scene: Any, loop: Any, renderer: Any, fluoro: Any) -> list[Any]:
    """The extra views for this session (none without a room: no C-arm, no scope)."""
    if scene.room is None:
        return []
    from remote.views import StreamView

    views = []
    if fluoro is not None:
        def carm(_frame: Any) -> tuple[np.ndarray, None] | None:
            latest = fluoro.latest()
            return None if latest is None else (latest[0], None)
        views.append(StreamView("carm", "C-arm monitor", "C 臂透视", carm))
    if scene.procedure is not None and renderer is not None and hasattr(renderer, "endoscope_image"):
        slot = PictureSlot()
        loop.recorders.append(EndoscopeFeed(scene, renderer, slot))

        def scope(_frame: Any) -> tuple[np.ndarray, None] | None:
            rgb = slot.get()
            return None if rgb is None else (rgb, None)
        views.append(StreamView("endoscope", "Endoscope", "内镜", scope))
    return views
