"""The mentor's extra views in a PTED session: the C-arm monitor (the latest radiograph) and the
endoscope (its picture, copied on the frame loop while the scope is in the cannula)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("aiortc")


def test_carm_and_endoscope_views_show_the_session_pictures():
    from vr_trainer.app.mentor_views import ENDOSCOPE_EVERY_N_FRAMES, mentor_views

    radiograph = np.full((256, 256, 3), 90, np.uint8)
    scope_picture = np.full((256, 256, 3), 200, np.uint8)
    scope_pose: list[np.ndarray | None] = [None]
    fluoro = SimpleNamespace(latest=lambda: None)
    procedure = SimpleNamespace(endoscope_pose=lambda state: scope_pose[0])
    scene = SimpleNamespace(room=object(), procedure=procedure)
    loop = SimpleNamespace(recorders=[])
    renderer = SimpleNamespace(endoscope_image=lambda: scope_picture)
    views = {v.view_id: v for v in mentor_views(scene, loop, renderer, fluoro)}
    assert set(views) == {"carm", "endoscope"}
    assert views["carm"].label_zh and views["endoscope"].label_zh
    frame = SimpleNamespace(index=0)
    assert views["carm"].cut(frame) is None, "no shot yet: nothing to show"
    fluoro.latest = lambda: (radiograph, 1, None)
    pic, rect = views["carm"].cut(frame)
    assert pic is radiograph and rect is None, "not part of the mirror: cannot be drawn on"
    feed = loop.recorders[0]
    feed(SimpleNamespace(), SimpleNamespace(index=0))
    assert views["endoscope"].cut(frame) is None, "the scope is not in the cannula"
    scope_pose[0] = np.eye(4)
    feed(SimpleNamespace(), SimpleNamespace(index=ENDOSCOPE_EVERY_N_FRAMES))
    pic, rect = views["endoscope"].cut(frame)
    assert np.array_equal(pic, scope_picture) and rect is None


def test_no_room_no_extra_views():
    from vr_trainer.app.mentor_views import mentor_views

    scene = SimpleNamespace(room=None, procedure=None)
    assert mentor_views(scene, SimpleNamespace(recorders=[]), None, None) == []
