"""The operating room around a prone patient: the table, a mobile C-arm, the C-arm monitor
on its cart and the endoscope monitor. Pure numpy/trimesh: meshes in their own model
frames plus world poses; the renderer draws them as any other :class:`DrawItem`.

World frame: millimetres, +y up, the floor at ``floor_y_mm``. The table's long axis
follows the patient's superior axis; the resident stands on the approach side (the side of
``resident_world_mm``); the C-arm's base and both monitors stand across the table, facing them.

C-arm (isocentric mobile C-arm, sizes of a typical 9-inch image-intensifier unit):
source-to-isocentre ``SAD_MM`` 600, source-to-detector ``SID_MM`` 1000 by default (pass the
scenario's ``carm``), the arc about the isocentre. Carm frame: origin at the isocentre, +y the
beam (source -> detector), +x the table's long axis, the arc bulging towards +z (the base). Its view angle rotates the
C about the long axis: 0 = AP (prone: source under the table, PA beam going up to the
detector above the back), +90 = lateral with the source on the side opposite the approach
and the detector on the resident's side, +30 = a 30-degree oblique tilted the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import trimesh

from vr_trainer.sim.scene import DrawItem, ImagePanelItem

SAD_MM = 600.0
SID_MM = 1000.0
VIEW_ANGLES_DEG = {"ap": 0.0, "lateral": 90.0, "oblique": 30.0}
TABLE_PAD_MM = 60.0
MONITOR_SCREEN_MM = (520.0, 330.0)  # width, height of the picture area


@dataclass(frozen=True)
class RoomMesh:
    """One prop's mesh in its model frame (mm) and its material (a tissue class of the renderer)."""

    vertices_mm: np.ndarray
    faces: np.ndarray
    material: str
    double_sided: bool = False


@dataclass(frozen=True)
class MonitorPanel:
    """Where a monitor's picture goes: a quad ``width_mm`` wide facing its +z axis (the resident)."""

    world_from_panel: np.ndarray
    width_mm: float


@dataclass
class Room:
    """The props of one session (fixed for the session except the C-arm's view angle)."""

    meshes: dict[str, RoomMesh]
    fixed: tuple[DrawItem, ...]
    carm_parts: tuple[str, ...]  # mesh ids that move with the C
    world_from_carm_ap: np.ndarray  # the C's pose at AP
    approach_side_world: np.ndarray  # unit, horizontal, towards the resident
    table_top_y_mm: float
    monitors: dict[str, MonitorPanel] = field(default_factory=dict)  # "carm_monitor", "endoscope_monitor"

    @property
    def isocentre_world_mm(self) -> np.ndarray:
        return self.world_from_carm_ap[:3, 3].copy()

    def world_from_carm(self, view_angle_deg: float) -> np.ndarray:
        """The C's pose for a view angle about the long axis (see the module docstring)."""
        return self.world_from_carm_ap @ _rot_x(-np.radians(view_angle_deg))

    def beam_direction_world(self, view_angle_deg: float) -> np.ndarray:
        """Unit vector from the source to the detector for ``view_angle_deg``."""
        return self.world_from_carm(view_angle_deg)[:3, 1].copy()

    def view_angle_from_beam(self, beam_direction_world: np.ndarray) -> float:
        """The view angle whose beam is closest to ``beam_direction_world`` (e.g. an
        ``sim.carm.CArmGeometry``'s source -> detector direction taken to the world)."""
        b = np.asarray(beam_direction_world, float)
        up = self.world_from_carm_ap[:3, 1]
        return float(np.degrees(np.arctan2(float(b @ self.approach_side_world), float(b @ up))))

    def draw_items(self, view_angle_deg: float = 0.0) -> tuple[DrawItem, ...]:
        """Everything to draw this frame: the fixed props plus the C at ``view_angle_deg``."""
        c = self.world_from_carm(view_angle_deg)
        return self.fixed + tuple(DrawItem(m, c) for m in self.carm_parts)

    def image_panel(self, monitor: str, image_rgb: np.ndarray, version: int) -> ImagePanelItem:
        """The picture on ``monitor`` ("carm_monitor" or "endoscope_monitor"), fitted to its
        screen (the wider of the image's and the screen's aspect decides the width)."""
        m = self.monitors[monitor]
        h, w = image_rgb.shape[:2]
        sw, sh = MONITOR_SCREEN_MM
        width = min(m.width_mm, sh * w / max(h, 1))
        return ImagePanelItem(monitor, image_rgb, version, m.world_from_panel, width)


    def endoscope_monitor_panel(self) -> ImagePanelItem:
        """The endoscope monitor's panel: the renderer shows the live endoscope picture on it
        while the snapshot has an endoscope (black otherwise); add it to every snapshot."""
        m = self.monitors["endoscope_monitor"]
        return ImagePanelItem("endoscope_monitor", _BLACK, 0, m.world_from_panel, MONITOR_SCREEN_MM[1])


_BLACK = np.zeros((2, 2, 3), np.uint8)


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    m = np.eye(4)
    m[1:3, 1:3] = [[c, -s], [s, c]]
    return m


def _box(size: tuple[float, float, float], centre: tuple[float, float, float]) -> trimesh.Trimesh:
    b = trimesh.creation.box(extents=size)
    b.apply_translation(centre)
    return b


def _cyl(radius: float, p0: tuple[float, float, float], p1: tuple[float, float, float],
         sections: int = 20) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=radius, segment=np.array([p0, p1], float), sections=sections)


def arc_tube(radius_mm: float, tube_radius_mm: float, start_deg: float, stop_deg: float,
             segments: int = 40, sides: int = 10) -> trimesh.Trimesh:
    """A closed tube swept along an arc of the carm frame's y-z plane (angle 0 = +z, 90 = +y)."""
    a = np.radians(np.linspace(start_deg, stop_deg, segments + 1))
    centres = np.stack([np.zeros_like(a), radius_mm * np.sin(a), radius_mm * np.cos(a)], 1)
    radial = centres / radius_mm  # unit, in the y-z plane
    ex = np.array([1.0, 0.0, 0.0])
    t = np.radians(np.arange(sides) * 360.0 / sides)
    ring = (tube_radius_mm * (np.cos(t)[None, :, None] * radial[:, None, :] + np.sin(t)[None, :, None] * ex))
    v = (centres[:, None, :] + ring).reshape(-1, 3)
    faces = []
    for i in range(segments):
        for j in range(sides):
            a0, a1 = i * sides + j, i * sides + (j + 1) % sides
            b0, b1 = a0 + sides, a1 + sides
            faces += [[a0, b0, a1], [a1, b0, b1]]
    caps = np.array([centres[0], centres[-1]])
    c0, c1 = len(v), len(v) + 1
    last = segments * sides
    for j in range(sides):
        faces.append([c0, (j + 1) % sides, j])
        faces.append([c1, last + j, last + (j + 1) % sides])
    mesh = trimesh.Trimesh(np.vstack([v, caps]), np.array(faces), process=False)
    if mesh.volume < 0:  # keep the winding outward whatever the sweep's handedness
        mesh.invert()
    return mesh


def arc_radius_mm(sad_mm: float, sid_mm: float) -> float:
    """The C's radius: its ends reach behind the tube housing and the image intensifier."""
    return max(sad_mm + 100.0, sid_mm - sad_mm + 240.0)


def _carm_meshes(sad_mm: float, sid_mm: float) -> dict[str, RoomMesh]:
    """The moving C in its carm frame: arc, X-ray tube housing, collimator, detector."""
    src_y, det_y = -sad_mm, sid_mm - sad_mm
    r = arc_radius_mm(sad_mm, sid_mm)
    arc = arc_tube(r, 45.0, -90.0, 90.0)
    tube = _box((240.0, r + src_y + 90.0, 260.0), (0.0, (-r + src_y + 90.0) / 2, 0.0))  # housing + yoke to the arc
    collimator = _box((200.0, 50.0, 200.0), (0.0, src_y + 115.0, 0.0))
    detector = cast(trimesh.Trimesh, trimesh.util.concatenate([
        _cyl(165.0, (0.0, det_y, 0.0), (0.0, det_y + 220.0, 0.0), 28),  # image intensifier
        _box((150.0, r - det_y - 220.0 + 10.0, 150.0), (0.0, (r + det_y + 220.0) / 2 - 5.0, 0.0)),
    ]))
    face = _cyl(150.0, (0.0, det_y - 4.0, 0.0), (0.0, det_y + 1.0, 0.0), 28)  # the detector's face
    return {
        "room:carm_arc": RoomMesh(arc.vertices, arc.faces, "carm_housing"),
        "room:carm_tube": RoomMesh(tube.vertices, tube.faces, "carm_housing"),
        "room:carm_collimator": RoomMesh(collimator.vertices, collimator.faces, "monitor_bezel"),
        "room:carm_detector": RoomMesh(detector.vertices, detector.faces, "carm_housing"),
        "room:carm_detector_face": RoomMesh(face.vertices, face.faces, "monitor_bezel"),
    }


def _monitor_cart(screen_centre_y_mm: float, floor_y_mm: float) -> dict[str, trimesh.Trimesh]:
    """A monitor on a wheeled cart in its own frame: the screen faces +z, the floor at
    ``floor_y_mm`` below the origin's height 0 = the screen's centre."""
    sw, sh = MONITOR_SCREEN_MM
    low = floor_y_mm - screen_centre_y_mm
    bezel = _box((sw + 50.0, sh + 50.0, 70.0), (0.0, 0.0, -36.0))
    pole = _cyl(22.0, (0.0, low + 60.0, -80.0), (0.0, -sh / 2, -80.0), 14)
    base = _box((560.0, 50.0, 480.0), (0.0, low + 35.0, -80.0))
    return {"bezel": bezel, "steel": cast(trimesh.Trimesh, trimesh.util.concatenate([pole, base]))}


def build_room(world_from_patient: np.ndarray, anatomy_bbox_world_mm: np.ndarray, resident_world_mm: np.ndarray,
               isocentre_world_mm: np.ndarray | None = None, floor_y_mm: float = 0.0,
               approach_side: str | None = None, sad_mm: float = SAD_MM, sid_mm: float = SID_MM,
               keep_clear_world_mm: np.ndarray | None = None) -> Room:
    """The room for a patient placed by ``world_from_patient`` (RAS -> world) whose meshes fill
    ``anatomy_bbox_world_mm`` ((2, 3): min and max corner in the world). The table top sits
    just under the body's lowest point; the C-arm's isocentre defaults to the bbox centre
    (pass the target level's point); ``approach_side`` ("left"/"right", the patient's) or, when
    None, the side of ``resident_world_mm`` (their head) is where the resident stands. The view
    angles then match :func:`vr_trainer.sim.carm.carm_geometry`'s ``angle_deg`` for that side.
    ``keep_clear_world_mm`` ((n, 3)): points of parts that move during the operation (the flexed tibia); the
    table's foot end stops short of those that would be under its top, as a table with its foot section dropped
    (the thigh on the table, the lower leg free)."""
    lo, hi = np.asarray(anatomy_bbox_world_mm, float).reshape(2, 3)
    up = np.array([0.0, 1.0, 0.0])
    long_axis = world_from_patient[:3, :3] @ np.array([0.0, 0.0, 1.0])  # the patient's superior axis
    long_axis = long_axis - up * float(long_axis @ up)
    if np.linalg.norm(long_axis) < 1e-6:  # a patient standing upright: the table along world x
        long_axis = np.array([1.0, 0.0, 0.0])
    long_axis /= np.linalg.norm(long_axis)
    centre = (lo + hi) / 2.0
    across = np.cross(up, long_axis)
    to_resident = np.asarray(resident_world_mm, float) - centre
    if approach_side is not None:
        if approach_side not in ("left", "right"):
            raise ValueError(f"room: approach_side must be 'left' or 'right', not {approach_side!r}")
        to_resident = world_from_patient[:3, :3] @ np.array([-1.0 if approach_side == "left" else 1.0, 0.0, 0.0])
    approach = across if float(to_resident @ across) >= 0 else -across
    iso = centre.copy() if isocentre_world_mm is None else np.asarray(isocentre_world_mm, float)

    # table frame: x along the long axis, y up, z towards the base side (away from the resident)
    x_t = long_axis if float(np.cross(long_axis, up) @ -approach) > 0 else -long_axis
    z_t = np.cross(x_t, up)
    table_top = float(lo[1]) - 2.0
    frame = np.eye(4)
    frame[:3, 0], frame[:3, 1], frame[:3, 2] = x_t, up, z_t
    table_pose = frame.copy()
    table_pose[:3, 3] = [centre[0], 0.0, centre[2]]
    table_pose[1, 3] = 0.0
    h = table_top - floor_y_mm
    a_mm, b_mm = _table_span(table_pose, table_top, keep_clear_world_mm, -float(x_t @ long_axis))
    mid_mm, length_mm = (a_mm + b_mm) / 2.0, b_mm - a_mm
    column_mm = float(np.clip(-300.0, a_mm + 450.0, b_mm - 450.0)) if length_mm > 900.0 else mid_mm
    pad = _box((length_mm, TABLE_PAD_MM, 540.0), (mid_mm, table_top - TABLE_PAD_MM / 2, 0.0))
    steel = cast(trimesh.Trimesh, trimesh.util.concatenate([
        _box((length_mm - 40.0, 50.0, 500.0), (mid_mm, table_top - TABLE_PAD_MM - 25.0, 0.0)),  # the table's frame
        _box((260.0, h - TABLE_PAD_MM - 90.0, 200.0),
             (column_mm, floor_y_mm + (h - TABLE_PAD_MM - 90.0) / 2 + 40.0, 0.0)),
        _box((900.0, 40.0, 560.0), (column_mm, floor_y_mm + 20.0, 0.0)),  # the base on the floor
    ]))
    floor = _box((7000.0, 10.0, 7000.0), (0.0, floor_y_mm - 5.0, 0.0))
    meshes: dict[str, RoomMesh] = {
        "room:table_pad": RoomMesh(pad.vertices, pad.faces, "table_pad"),
        "room:table_frame": RoomMesh(steel.vertices, steel.faces, "steel"),
        "room:floor": RoomMesh(floor.vertices, floor.faces, "floor"),
    }
    fixed = [DrawItem(k, table_pose) for k in meshes]

    # the C: carm frame at AP (beam up), x along the table, arc towards the base (+z_t)
    carm_ap = frame.copy()
    carm_ap[:3, 3] = iso
    carm = _carm_meshes(sad_mm, sid_mm)
    meshes.update(carm)
    # the base: a cart across the table, a column and an arm to the clamp on the arc's middle
    r = arc_radius_mm(sad_mm, sid_mm)
    arm_y = 0.0
    iso_h = float(iso[1]) - floor_y_mm
    base = cast(trimesh.Trimesh, trimesh.util.concatenate([
        _box((140.0, 110.0, 220.0), (0.0, arm_y, r + 40.0)),  # the clamp the arc slides through
        _box((110.0, 110.0, 300.0), (0.0, arm_y, r + 290.0)),  # the horizontal arm
        _box((200.0, iso_h - 250.0, 200.0), (0.0, -iso_h + 250.0 + (iso_h - 250.0) / 2 - 5.0, r + 480.0)),
        _box((700.0, 260.0, 620.0), (0.0, -iso_h + 130.0, r + 560.0)),  # the cart
    ]))
    meshes["room:carm_base"] = RoomMesh(base.vertices, base.faces, "carm_housing")
    fixed.append(DrawItem("room:carm_base", carm_ap))

    # monitors: across the table beyond the C-arm, screens at the resident's eye height, facing them
    eye = np.asarray(resident_world_mm, float)
    screen_y = max(float(eye[1]) + 80.0, table_top + 450.0)
    monitors: dict[str, MonitorPanel] = {}
    for name, along in (("carm_monitor", 750.0), ("endoscope_monitor", -750.0)):
        pos = iso + along * x_t + 1250.0 * z_t
        pos[1] = screen_y
        facing = eye - pos
        facing[1] = 0.0
        facing /= np.linalg.norm(facing)
        pose = np.eye(4)
        pose[:3, 2] = facing
        pose[:3, 1] = up
        pose[:3, 0] = np.cross(up, facing)
        pose[:3, 3] = pos
        parts = _monitor_cart(screen_y, floor_y_mm)
        for part, mat in (("bezel", "monitor_bezel"), ("steel", "steel")):
            mid = f"room:{name}_{part}"
            meshes[mid] = RoomMesh(parts[part].vertices, parts[part].faces, mat)
            fixed.append(DrawItem(mid, pose))
        panel = pose.copy()
        panel[:3, 3] = pos + 1.5 * facing  # just in front of the bezel
        monitors[name] = MonitorPanel(panel, MONITOR_SCREEN_MM[0])
    return Room(meshes, tuple(fixed), tuple(carm), carm_ap, approach, table_top, monitors)


def _table_span(table_pose: np.ndarray, table_top_mm: float, keep_clear_world_mm: np.ndarray | None,
                foot_sign: float, clearance_mm: float = 30.0) -> tuple[float, float]:
    """The table top's extent (mm) along its long axis (table frame x, the feet towards ``foot_sign``), 2 m
    centred on the anatomy, its foot end ``clearance_mm`` short of the points that would be under the top."""
    a_mm, b_mm = -1000.0, 1000.0
    if keep_clear_world_mm is None or not len(keep_clear_world_mm):
        return a_mm, b_mm
    pts = np.asarray(keep_clear_world_mm, float)
    below = pts[pts[:, 1] < table_top_mm + 1.0]
    if not len(below):
        return a_mm, b_mm
    x = (below - table_pose[:3, 3]) @ table_pose[:3, 0]
    if foot_sign > 0:
        b_mm = max(min(b_mm, float(x.min()) - clearance_mm), a_mm + 400.0)
    else:
        a_mm = min(max(a_mm, float(x.max()) + clearance_mm), b_mm - 400.0)
    return a_mm, b_mm


def anatomy_bbox_world(world_from_patient: np.ndarray, vertices_ras_mm: list[np.ndarray]) -> np.ndarray:
    """(2, 3) world-frame min/max corners of meshes given in the patient frame."""
    r, t = world_from_patient[:3, :3], world_from_patient[:3, 3]
    pts = np.vstack([np.asarray(v, float) for v in vertices_ras_mm]) @ r.T + t
    return np.stack([pts.min(0), pts.max(0)])
