"""What a viewer watches: views cut from the resident's mirror picture.

Every viewer picks one view (the console's view selector; the ``view`` message) and the
trainee announces the views it offers in its ``hello``. Each view in use is converted
and encoded once for all the viewers who watch it (:class:`~remote.publisher.MirrorFrameSource`).

Built in: ``eye``, the left eye full size (the default: what the resident sees, at the
resolution it was rendered), and ``both``, the two eyes side by side as the mirror holds
them. A view that shows part of the mirror names that part (``rect``, normalised x, y,
width, height of the mirror picture) so the console maps a stroke drawn on the view back
to the mirror picture, where strokes are unprojected; a view that is not part of the
mirror (the C-arm monitor, the endoscope, once the simulation renders them: issue #10)
has no rect and cannot be drawn on. Such views come from the app: build a
:class:`StreamView` whose ``cut`` returns that picture and pass it to
:meth:`~remote.publisher.MirrorFrameSource.add_view` (or ``BridgeConfig.extra_views``)
before viewers join; the console lists it with its labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vr_trainer.frame import MirrorFrame

Rect = tuple[float, float, float, float]  # x, y, width, height, as fractions of the mirror picture
VIEW_ID_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
Cut = Callable[[MirrorFrame], "tuple[np.ndarray, Rect | None] | None"]


@dataclass(frozen=True)
class StreamView:
    """One choice in the viewer's view selector."""

    view_id: str
    label_en: str
    label_zh: str
    cut: Cut  # the mirror frame -> (HxWx3 uint8 picture, where it lies in the mirror or None); None: not now

    def describe(self) -> dict[str, Any]:
        return {"id": self.view_id, "label_en": self.label_en, "label_zh": self.label_zh}


def _whole(frame: MirrorFrame) -> tuple[np.ndarray, Rect | None] | None:
    if frame.rgb is None:
        return None
    return frame.rgb, (0.0, 0.0, 1.0, 1.0)


def _left_eye(frame: MirrorFrame) -> tuple[np.ndarray, Rect | None] | None:
    rgb = frame.rgb
    if rgb is None:
        return None
    h, w = rgb.shape[:2]
    if not frame.views:
        return rgb, (0.0, 0.0, 1.0, 1.0)
    x, y, rw, rh = (int(v) for v in frame.views[0].rect_px)
    x0, y0 = max(0, min(w - 2, x)), max(0, min(h - 2, y))
    x1, y1 = max(x0 + 2, min(w, x + rw)), max(y0 + 2, min(h, y + rh))
    return rgb[y0:y1, x0:x1], (x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h)


EYE = StreamView("eye", "One eye", "单眼", _left_eye)
BOTH = StreamView("both", "Both eyes side by side", "双眼并排", _whole)
BUILTIN_VIEWS = (EYE, BOTH)
DEFAULT_VIEW = EYE.view_id
