"""`vr-trainer preview FILE --out DIR`: see what a scenario file says before anyone runs it.

Renders the scenario's anatomy offscreen (EGL, no display) from three standard views: AP
(from anterior), lateral (from the operated side) and the approach view (looking along the
first step's approach: the target landmark's ``approach_direction``, else the demo tool's
shaft at its first key, else from the resident's demo head pose). Targets are small bright
spheres with labels; risk structures are highlighted and wrapped in translucent shells, their
mesh offset by ``margin_mm`` along the vertex normals; risk structures and targets hidden
behind bone show through as ghosts; the approach is a dashed line from the first target.
Each view carries the step list ("1. prompt -> target").
Writes DIR/preview_ap.png, preview_lateral.png, preview_approach.png and preview_sheet.png,
all rendered in memory first and then moved into place, so an error writes nothing.

Units: millimetres in the bundle's patient frame (RAS), pixels.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import moderngl

    from vr_trainer.scenario.schema import Scenario

VIEW_NAMES = ("ap", "lateral", "approach")
FOV_DEG = 28.0
PREVIEW_LEFT_OUT = ("skin", "fat", "muscle")  # tissues a preview leaves out (it is a view of the target anatomy)
GHOST_ALPHA = 0.5  # how strongly a risk structure (and its margin) hidden behind anatomy shows through
MARKER_GHOST_ALPHA = 0.85  # a target marker is always seen
BACKGROUND_RGB = (20, 24, 30)
RISK_RGB = (255, 120, 90)  # label colour of risk structures
TARGET_RGB = (90, 255, 150)
APPROACH_LINE_MM = 150.0  # how far out the approach line is drawn from the first target


@dataclass
class PreviewTarget:
    id: str
    label: str
    point_ras_mm: np.ndarray  # (3,)
    landmark: dict[str, Any] | None


@dataclass
class PreviewRisk:
    id: str
    label: str
    margin_mm: float
    vertices_mm: np.ndarray  # (n, 3)
    faces: np.ndarray  # (m, 3)


@dataclass
class PreviewScene:
    """What a preview draws, in the patient frame."""

    scenario: "Scenario"
    parts: list[tuple[str, str, np.ndarray, np.ndarray, bool]]  # name, tissue, vertices, faces, double sided
    risks: list[PreviewRisk]
    targets: list[PreviewTarget]
    step_lines: list[str]
    approach_ras: np.ndarray  # unit, from the first target towards where the instrument comes from
    approach_how: str
    focus: PreviewTarget
    lo_mm: np.ndarray
    hi_mm: np.ndarray


@dataclass
class ViewImage:
    name: str
    caption: str
    render_rgb: np.ndarray  # (size, size, 3) uint8: the render with its labels
    image_rgb: np.ndarray  # the render above the step list (what preview_<name>.png holds)
    pixel_from_ras: np.ndarray  # 4x4: ras (homogeneous) -> clip; see project()
    label_boxes: list[tuple[float, float, float, float]]  # (x0, y0, x1, y1) pixels covered by labels


def _text(t: Any, locale: str) -> str:
    return t.text(locale) if t is not None else ""


def _target_point(t: Any, bundle: Any, by_name: dict[str, np.ndarray], scenario_id: str) -> np.ndarray:
    from vr_trainer.scenario.loader import ScenarioError

    if t.point_mm is not None:
        return np.asarray(t.point_mm, float)
    if t.landmark is not None:
        lm = bundle.landmarks.get(t.landmark)
        if isinstance(lm, dict) and ("incenter_mm" in lm or "centroid_mm" in lm):
            return np.asarray(lm.get("incenter_mm") or lm["centroid_mm"], float)
        if isinstance(lm, list) and len(lm) == 3:
            return np.asarray(lm, float)
        raise ScenarioError(f"scenario '{scenario_id}': target '{t.id}' names landmark '{t.landmark}', which the "
                            f"bundle {bundle.path} does not have as a point "
                            f"(it has: {', '.join(sorted(bundle.landmarks))})")
    if t.structure in by_name:
        return by_name[t.structure].mean(0)
    raise ScenarioError(f"scenario '{scenario_id}': target '{t.id}' names structure '{t.structure}', which the "
                        f"bundle {bundle.path} does not have (it has: {', '.join(sorted(by_name))})")


def _knee_target(s: Any, bundle: Any, locale: str) -> PreviewTarget:
    """The knee joint (midway between the femoral and tibial knee centres, from the bundle's bones)."""
    from vr_trainer.procedures.tka_landmarks import femur_landmarks, tibia_landmarks
    from vr_trainer.procedures.tka import _find

    femur = femur_landmarks(_find(bundle.structures, "femur").mesh, side=s.anatomy.side)
    tibia = tibia_landmarks(_find(bundle.structures, "tibia").mesh, side=femur.side)
    return PreviewTarget("knee_joint", "膝关节" if locale == "zh" else "Knee joint",
                         0.5 * (femur.knee_centre_mm + tibia.knee_centre_mm), None)


def load_preview_scene(path: str | Path) -> PreviewScene:
    """Load a scenario and its bundle and resolve what the preview shows (no GL)."""
    from vr_trainer.anatomy.bundle import load_bundle
    from vr_trainer.scenario.conditions import ConditionError, first_reached_target, parse
    from vr_trainer.scenario.loader import ScenarioError, load_scenario, resolve_bundle_path
    from vr_trainer.sim.transforms import rigid_inverse, translation

    s = load_scenario(path)
    bundle = load_bundle(resolve_bundle_path(s))
    loc = s.locale
    by_name = {st.name: np.asarray(st.mesh.vertices, float) for st in bundle.structures}
    risk_names = {r.structure for r in s.risk_structures}
    # a planning view of the anatomy that matters: the body's skin, fat and muscles would cover it
    hidden = set(s.anatomy.hide) | {st.name for st in bundle.structures if st.tissue in PREVIEW_LEFT_OUT}
    parts = [(st.name, st.tissue, by_name[st.name], np.asarray(st.mesh.faces), not st.watertight)
             for st in bundle.structures if st.name not in hidden and st.name not in risk_names]
    shown = [by_name[st.name] for st in bundle.structures if st.name not in hidden]
    risks = []
    for r in s.risk_structures:
        if r.structure not in by_name:
            raise ScenarioError(f"scenario '{s.id}': risk structure '{r.id}' names '{r.structure}', which the bundle "
                                f"{bundle.path} does not have (it has: {', '.join(sorted(by_name))})")
        risks.append(PreviewRisk(r.id, _text(r.label, loc) or r.id, r.margin_mm, by_name[r.structure],
                                 np.asarray(bundle[r.structure].mesh.faces)))
    targets = [PreviewTarget(t.id, _text(t.label, loc) or t.id, _target_point(t, bundle, by_name, s.id),
                             bundle.landmarks.get(t.landmark) if t.landmark else None) for t in s.targets]
    by_id = {t.id: t for t in targets}
    lines, first = [], None
    for k, st in enumerate(s.steps):
        try:
            tid = first_reached_target(parse(st.complete_when))
        except ConditionError:
            tid = None
        first = first or (tid if tid in by_id else None)
        goal = tid if tid else st.complete_when
        lines.append(f"{k + 1}. {_text(st.prompt, loc)} -> {goal}")
    field_mm: float | None = None
    if not targets and s.procedure == "tka" and s.tka is not None:
        targets = [_knee_target(s, bundle, loc)]  # the knee workflow aims at cuts, not points: look at the joint
        by_id = {t.id: t for t in targets}
        field_mm = 110.0  # and frame the operative field around it, not the whole leg
    if not targets:
        raise ScenarioError(f"scenario '{s.id}': declares no targets; a preview needs at least one to look at")
    focus = by_id[first] if first else targets[0]
    allv = np.concatenate(shown + [r.vertices_mm for r in risks] + [np.stack([t.point_ras_mm for t in targets])])
    lo, hi = allv.min(0), allv.max(0)
    if field_mm is not None:
        lo, hi = np.maximum(lo, focus.point_ras_mm - field_mm), np.minimum(hi, focus.point_ras_mm + field_mm)
    # the approach: the landmark's own direction, else the demo tool's shaft, else from the head
    lm = focus.landmark
    d = s.demo
    if isinstance(lm, dict) and "approach_direction" in lm:
        approach, how = np.asarray(lm["approach_direction"], float), "the landmark's approach_direction"
    elif d.tool and np.linalg.norm(np.subtract(d.tool[0].toward_mm, d.tool[0].tip_mm)) > 1e-6:
        approach, how = np.subtract(d.tool[0].toward_mm, d.tool[0].tip_mm), "the demo tool's shaft at its first key"
    else:
        from vr_trainer.app.session import ORIENTATIONS

        sv = np.concatenate(shown) if shown else allv
        rot = np.eye(4)
        rot[:3, :3] = ORIENTATIONS[s.anatomy.patient_orientation]
        wfp = translation(np.asarray(s.anatomy.position_mm)) @ rot @ translation(-(sv.min(0) + sv.max(0)) / 2)
        head = rigid_inverse(wfp) @ np.append(np.asarray(d.head[0].position_mm, float), 1.0)
        approach, how = head[:3] - focus.point_ras_mm, "the resident's demo head pose"
    approach = approach / max(float(np.linalg.norm(approach)), 1e-9)
    return PreviewScene(s, parts, risks, targets, lines, approach, how, focus, lo, hi)


def offset_shell(vertices_mm: np.ndarray, faces: np.ndarray, margin_mm: float) -> np.ndarray:
    """``vertices_mm`` ((n, 3) mm) moved ``margin_mm`` outward along the area-weighted vertex normals."""
    from vr_trainer.render.renderer import smooth_normals

    return vertices_mm + margin_mm * smooth_normals(vertices_mm, faces.astype(np.int64))


def _views(sc: PreviewScene) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, caption, direction towards the camera, up, centre) in RAS."""
    side = sc.scenario.anatomy.side or "left"
    lat = np.array([-1.0 if side == "left" else 1.0, 0.0, 0.0])
    z = np.array([0.0, 0.0, 1.0])
    a = sc.approach_ras
    up_a = z if abs(float(a @ z)) < 0.9 else np.array([0.0, 1.0, 0.0])
    centre = (sc.lo_mm + sc.hi_mm) / 2
    return [("ap", "AP (from anterior)", np.array([0.0, 1.0, 0.0]), z, centre),
            ("lateral", f"Lateral (from the {side})", lat, z, centre),
            ("approach", f"Approach to {sc.focus.id} ({sc.approach_how})", a, up_a, centre)]


def _camera(sc: PreviewScene, toward: np.ndarray, up: np.ndarray,
            centre: np.ndarray) -> tuple[np.ndarray, float, float]:
    """camera_from_patient placing every corner of the bounds inside the field of view; near, far (mm)."""
    from vr_trainer.sim.transforms import look_at_pose, rigid_inverse

    corners = np.array([[x, y, z] for x in (sc.lo_mm[0], sc.hi_mm[0]) for y in (sc.lo_mm[1], sc.hi_mm[1])
                        for z in (sc.lo_mm[2], sc.hi_mm[2])])
    basis = look_at_pose(centre + toward, centre, up)[:3, :3]  # columns: right, up, back (towards the camera)
    rel = (corners - centre) @ basis
    t = np.tan(np.radians(FOV_DEG / 2))
    dist = float(max(rel[:, 2] + np.maximum(abs(rel[:, 0]), abs(rel[:, 1])) / t)) * 1.08
    radius = float(np.linalg.norm(rel, axis=1).max())
    pose = look_at_pose(centre + dist * toward, centre, up)
    return rigid_inverse(pose), max(1.0, dist - radius - 10.0), dist + radius + 10.0


def _font(px: int) -> Any:
    from PIL import ImageFont

    from vr_trainer.render.text import font_path

    p = font_path()
    return ImageFont.truetype(p, px) if p else ImageFont.load_default(size=px)


def project(pixel_from_ras: np.ndarray, p_mm: np.ndarray, size: int) -> tuple[float, float] | None:
    """Pixel (x right, y down) of a RAS point in a view ``size`` pixels square; None behind the camera."""
    c = pixel_from_ras @ np.append(np.asarray(p_mm, float), 1.0)
    if c[3] <= 1e-9:
        return None
    return (c[0] / c[3] + 1) / 2 * size, (1 - c[1] / c[3]) / 2 * size


def _label(draw: Any, font: Any, xy: tuple[float, float], texts: tuple[str, str], rgb: tuple[int, int, int],
           size: int, taken: list[tuple[float, float, float, float]]) -> None:
    """Draw the first of ``texts`` (long, short) no wider than 45% of the view near ``xy``, where it
    overlaps no label in ``taken`` (else the least-bad place), with a leader line when it had to
    move away from the point; nothing when even the short text is too wide (thumbnails)."""
    x, y = xy
    text = next((t for t in texts if draw.textlength(t, font=font) <= 0.45 * size), None)
    if text is None:
        return
    w, h = draw.textlength(text, font=font) + 4, font.size * 1.3
    gap = font.size * 0.5
    best: tuple[float, float, float] | None = None
    for k in range(12):
        dy = (k // 4) * h * 1.1
        dx_l, dy_l = [(gap, -h - gap - dy), (gap, gap + dy), (-w - gap, -h - gap - dy), (-w - gap, gap + dy)][k % 4]
        bx = min(max(x + dx_l, 1.0), size - w - 1)
        by = min(max(y + dy_l, 1.0), size - h - 1)
        overlap = sum(max(0.0, min(bx + w, tx1) - max(bx, tx0)) * max(0.0, min(by + h, ty1) - max(by, ty0))
                      for tx0, ty0, tx1, ty1 in taken)
        if best is None or overlap < best[0] - 1e-6:
            best = (overlap, bx, by)
        if overlap <= 0:
            break
    assert best is not None
    _, bx, by = best
    taken.append((bx, by, bx + w, by + h))
    cx, cy = min(max(x, bx), bx + w), min(max(y, by), by + h)
    if np.hypot(cx - x, cy - y) > gap * 1.5:
        draw.line([(x, y), (cx, cy)], fill=rgb, width=1)
    draw.rectangle([bx, by, bx + w, by + h], fill=(8, 12, 20))
    draw.text((bx + 2, by + h * 0.08), text, font=font, fill=rgb)


def _approach_line(draw: Any, pixel_from_ras: np.ndarray, sc: PreviewScene, size: int) -> None:
    """The first step's approach as a dashed line from its target out to APPROACH_LINE_MM."""
    a = project(pixel_from_ras, sc.focus.point_ras_mm, size)
    b = project(pixel_from_ras, sc.focus.point_ras_mm + APPROACH_LINE_MM * sc.approach_ras, size)
    if a is None or b is None or np.hypot(b[0] - a[0], b[1] - a[1]) < 4:
        return  # seen end-on (the approach view itself)
    n = 14
    for k in range(0, n, 2):
        p0 = (a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n)
        p1 = (a[0] + (b[0] - a[0]) * (k + 1) / n, a[1] + (b[1] - a[1]) * (k + 1) / n)
        draw.line([p0, p1], fill=TARGET_RGB, width=max(1, size // 256))


def _steps_strip(lines: list[str], width: int, font_px: int) -> np.ndarray:
    from vr_trainer.render.text import render_text_rgba

    img = render_text_rgba(lines, font_px=font_px, width_px=width, padding_px=max(4, font_px // 2))
    a = img[..., 3:4].astype(np.float32) / 255.0
    base = np.asarray(BACKGROUND_RGB, np.float32)
    return np.clip(img[..., :3] + base * (1 - a), 0, 255).astype(np.uint8)


def render_views(sc: PreviewScene, size: int, ctx: "moderngl.Context | None" = None) -> list[ViewImage]:
    """The three labelled views, ``size`` pixels square (an EGL context is made when none is given)."""
    import trimesh
    from PIL import Image, ImageDraw

    from vr_trainer.frame import Fov, View
    from vr_trainer.render.renderer import SceneRenderer
    from vr_trainer.sim.scene import DrawItem, SceneSnapshot
    from vr_trainer.xr.base import read_rgb

    own = ctx is None
    if ctx is None:
        from vr_trainer.xr.headless import create_egl_context

        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
        ctx = create_egl_context()
    try:
        r = SceneRenderer(ctx, clear_rgb=tuple(c / 255 for c in BACKGROUND_RGB))  # type: ignore[arg-type]
        for name, tissue, v, f, two in sc.parts:
            r.add_mesh(f"a:{name}", v, f, tissue, double_sided=two)
        overlay: list[str] = []  # risk structures
        markers: list[str] = []  # targets
        for rk in sc.risks:
            r.add_mesh(f"r:{rk.id}", rk.vertices_mm, rk.faces, "risk_structure")
            overlay.append(f"r:{rk.id}")
            if rk.margin_mm > 0:
                shell = offset_shell(rk.vertices_mm, rk.faces, rk.margin_mm)
                r.add_mesh(f"s:{rk.id}", shell, rk.faces, "risk_margin")
                r.add_mesh(f"S:{rk.id}", shell, rk.faces, "risk_margin_solid")
        radius_mm = max(1.5, 0.012 * float(np.linalg.norm(sc.hi_mm - sc.lo_mm)))
        ball = trimesh.creation.icosphere(subdivisions=2, radius=radius_mm)
        for t in sc.targets:
            r.add_mesh(f"t:{t.id}", np.asarray(ball.vertices) + t.point_ras_mm, np.asarray(ball.faces), "target_marker")
            markers.append(f"t:{t.id}")
        shells = [f"s:{rk.id}" for rk in sc.risks if rk.margin_mm > 0]
        solid = [f"S:{rk.id}" for rk in sc.risks if rk.margin_mm > 0]
        font_px = int(np.clip(size / 34, 9, 22))
        font = _font(font_px)
        strip = _steps_strip(sc.step_lines, size, font_px)
        out = []
        for name, caption, toward, up, centre in _views(sc):
            cam, r.near_mm, r.far_mm = _camera(sc, toward, up, centre)
            view = View(0, np.eye(4), Fov.symmetric(FOV_DEG, 1.0), size, size)

            def shot(ids: list[str], view: View = view, cam: np.ndarray = cam) -> tuple[np.ndarray, np.ndarray]:
                t = r.render(view, SceneSnapshot(0.0, 0, tuple(DrawItem(i, cam) for i in ids)))
                depth = np.frombuffer(t.depth.read(), np.float32).reshape(size, size)[::-1]
                return read_rgb(t.resolved), depth.copy()

            rgb_a, dep_a = shot([f"a:{p[0]}" for p in sc.parts] + overlay + markers + shells)
            img = rgb_a.astype(np.float32)
            for ids, alpha in ((overlay + solid, GHOST_ALPHA), (markers, MARKER_GHOST_ALPHA)):
                if ids:
                    rgb_b, dep_b = shot(ids)
                    ghost = (dep_b < 1.0) & (dep_b > dep_a + 1e-5)  # hidden behind something in the full view
                    img[ghost] = (1 - alpha) * img[ghost] + alpha * rgb_b[ghost]
            pil = Image.fromarray(img.astype(np.uint8))
            draw = ImageDraw.Draw(pil)
            _, proj = r.matrices(view)
            pfr = proj @ cam
            taken: list[tuple[float, float, float, float]] = []
            _approach_line(draw, pfr, sc, size)
            for t in sc.targets:
                xy = project(pfr, t.point_ras_mm, size)
                if xy is not None:
                    rad = max(3.0, size / 90)
                    draw.ellipse([xy[0] - rad, xy[1] - rad, xy[0] + rad, xy[1] + rad], outline=(255, 255, 255))
                    _label(draw, font, xy, (t.label, t.id), TARGET_RGB, size, taken)
            for rk in sc.risks:
                xy = project(pfr, rk.vertices_mm.mean(0), size)
                if xy is not None:
                    _label(draw, font, xy, (f"{rk.label} ({rk.margin_mm:g} mm)", f"{rk.id} ({rk.margin_mm:g} mm)"),
                           RISK_RGB, size, taken)
            rendered = np.asarray(pil)
            out.append(ViewImage(name, caption, rendered, np.vstack([rendered, strip]), pfr, taken))
        return out
    finally:
        if own:
            ctx.release()


def contact_sheet(sc: PreviewScene, views: list[ViewImage]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The three renders side by side under a title, each with its caption, the steps below;
    returns the image and each render's top-left corner (x, y) in it."""
    from PIL import Image, ImageDraw

    size = views[0].render_rgb.shape[0]
    pad = max(4, size // 48)
    font_px = int(np.clip(size / 30, 10, 26))
    font = _font(font_px)
    title_h, cap_h = int(font_px * 1.9), int(font_px * 1.6)
    width = len(views) * size + (len(views) + 1) * pad
    strip = _steps_strip(sc.step_lines, width - 2 * pad, font_px)
    height = title_h + cap_h + size + pad + strip.shape[0] + pad
    sheet = Image.new("RGB", (width, height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(sheet)
    s = sc.scenario
    draw.text((pad, pad // 2), f"{s.title.text(s.locale)}   [{s.id}, {s.procedure}]", font=font, fill=(235, 240, 250))
    small = _font(max(9, font_px - 3))
    corners = []
    for k, v in enumerate(views):
        x, y = pad + k * (size + pad), title_h + cap_h
        cap = v.caption
        while len(cap) > 4 and draw.textlength(cap, font=small) > size:
            cap = cap[:-2]
        draw.text((x, title_h + (cap_h - small.size) // 2), cap, font=small, fill=(200, 210, 225))
        sheet.paste(Image.fromarray(v.render_rgb), (x, y))
        corners.append((x, y))
    sheet.paste(Image.fromarray(strip), (pad, title_h + cap_h + size + pad))
    return np.asarray(sheet), corners


def write_pngs_atomic(images: dict[Path, np.ndarray]) -> None:
    """Write every image to a temporary sibling first, then move all into place."""
    from PIL import Image

    tmps: list[tuple[str, Path]] = []
    try:
        for path, rgb in images.items():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
            os.close(fd)
            tmps.append((tmp, path))
            Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG")
        for tmp, path in tmps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in tmps:
            Path(tmp).unlink(missing_ok=True)


@dataclass
class PreviewResult:
    files: dict[str, Path]
    views: list[ViewImage]
    sheet_rgb: np.ndarray
    tile_corners: list[tuple[int, int]]
    scene: PreviewScene


def preview(path: str | Path, out_dir: str | Path, size: int = 512,
            ctx: "moderngl.Context | None" = None) -> PreviewResult:
    """Render the scenario's preview into ``out_dir`` (created if needed)."""
    if not 64 <= size <= 4096:
        raise ValueError(f"--size {size}: give 64 to 4096 pixels")
    sc = load_preview_scene(path)
    views = render_views(sc, size, ctx)
    sheet, corners = contact_sheet(sc, views)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    files = {f"preview_{v.name}": out / f"preview_{v.name}.png" for v in views}
    files["preview_sheet"] = out / "preview_sheet.png"
    images = {files[f"preview_{v.name}"]: v.image_rgb for v in views}
    images[files["preview_sheet"]] = sheet
    write_pngs_atomic(images)
    return PreviewResult(files, views, sheet, corners, sc)


def cmd_preview(args: argparse.Namespace) -> int:
    res = preview(args.file, args.out, args.size)
    for p in res.files.values():
        print(p)
    return 0


def add_preview_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="render a scenario's anatomy, targets, risk margins and steps to PNGs")
    p.add_argument("file", metavar="FILE", help="scenario YAML")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for preview_{ap,lateral,approach,sheet}.png")
    p.add_argument("--size", type=int, default=512, help="pixels per view (square, default 512)")
    p.set_defaults(func=cmd_preview)
