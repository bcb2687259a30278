"""The report's plots, drawn with matplotlib (Agg) into inline SVG text: no file, no network.

Text in the SVG is drawn as paths (so Chinese labels need no font on the viewing machine);
the anatomy's filled triangles are rasterised inside the SVG to keep it small."""

from __future__ import annotations

import io
import re
from typing import Any, Callable, Sequence

import numpy as np

FONTS = ("DejaVu Sans", "WenQuanYi Micro Hei", "Noto Sans CJK SC", "Droid Sans Fallback")  # Latin, then CJK
TISSUE_RGBA = {"bone": (0.84, 0.82, 0.77, 1.0), "disc": (0.70, 0.82, 0.93, 1.0), "dura": (0.80, 0.75, 0.92, 1.0),
               "pathology": (0.93, 0.62, 0.58, 1.0), "nerve": (0.98, 0.87, 0.45, 1.0)}  # drawn in this order
CURVE_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    plt.rcParams.update({"font.family": [f for f in FONTS if f in have] or ["sans-serif"], "svg.fonttype": "path",
                         "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", dpi=110, metadata={"Date": None})
    _plt().close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # inline in HTML: no XML prolog, DOCTYPE, metadata or namespace URIs
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text, count=3)


def timeline_svg(steps: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]],
                 errors: Sequence[dict[str, Any]], end_s: float, L: Callable[[str], str]) -> str:
    """Steps as bars (start..end run seconds), events as markers above them, critical errors in red."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.0, 1.2 + 0.35 * len(steps)))
    for i, s in enumerate(steps):
        if s.get("started_s") is None:
            continue
        end = s.get("ended_s") if s.get("ended_s") is not None else end_s
        colour = "#2ca02c" if s.get("completed") else ("#d62728" if s.get("failed") else "#bbbbbb")
        ax.barh(i, end - s["started_s"], left=s["started_s"], color=colour, alpha=0.7, height=0.6)
    ev_y = len(steps)
    ids = sorted({e["id"] for e in events})
    for e in events:
        if e.get("time_s") is not None:
            ax.plot(e["time_s"], ev_y + 0.3 * (ids.index(e["id"]) % 3), "v", color="#ff7f0e", ms=6)
    for k, eid in enumerate(ids):
        first = next(e for e in events if e["id"] == eid and e.get("time_s") is not None)
        ax.annotate(eid, (first["time_s"], ev_y + 0.3 * (k % 3)), xytext=(4, 3), textcoords="offset points",
                    fontsize=7, color="#a65c00")
    for c in errors:
        if c.get("time_s") is not None:
            ax.axvline(c["time_s"], color="#d62728", lw=2)
            ax.annotate(c["id"], (c["time_s"], -0.6), xytext=(3, 0), textcoords="offset points", fontsize=7,
                        color="#d62728")
    ax.set_yticks(list(range(len(steps))) + [ev_y], [s["id"] for s in steps] + [L("events")])
    ax.set_xlim(0, max(end_s, 1.0))
    ax.set_ylim(-0.8, ev_y + 1.0)
    ax.set_xlabel(L("clock_s"))
    ax.invert_yaxis()
    return _svg(fig)


def distance_svg(times_s: np.ndarray, distances: dict[str, np.ndarray], labels: dict[str, str],
                 margins: dict[str, float], contacts: Sequence[tuple[float, str, float]],
                 L: Callable[[str], str]) -> str:
    """Signed distance (mm) from the instrument to each risk structure over run time; contacts as
    red crosses, each structure's margin dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.0, 3.2))
    if not distances:
        ax.text(0.5, 0.5, L("no_distances"), ha="center", va="center", transform=ax.transAxes)
    top = 0.0
    for k, (rid, d) in enumerate(distances.items()):
        c = CURVE_COLOURS[k % len(CURVE_COLOURS)]
        ax.plot(times_s, d, color=c, lw=1.4, label=labels.get(rid, rid))
        if rid in margins:
            ax.axhline(margins[rid], color=c, lw=0.8, ls="--", alpha=0.6)
        finite = d[np.isfinite(d)]
        if finite.size:
            top = max(top, float(np.percentile(finite, 95)))
    ax.axhline(0.0, color="black", lw=0.8)
    for t_s, _rid, d_mm in contacts:
        ax.plot(t_s, d_mm, "x", color="#d62728", ms=9, mew=2)
    if contacts:
        ax.plot([], [], "x", color="#d62728", ms=9, mew=2, label=L("contact"))
    lows = [float(np.nanmin(d)) for d in distances.values() if np.isfinite(d).any()]
    ax.set_ylim(min([-1.0] + lows) - 1.0, max(top, 10.0) * 1.1)
    ax.set_xlabel(L("clock_s"))
    ax.set_ylabel(L("distance_mm"))
    if distances:
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    return _svg(fig)


def shots_svg(times_s: np.ndarray, shots: np.ndarray, end_s: float, L: Callable[[str], str]) -> str:
    """Each fluoroscopy shot as a tick on the run's time axis, with the running count."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.0, 1.8))
    shot_t = [float(times_s[i]) for i in range(1, len(shots)) if shots[i] > shots[i - 1]]
    if len(shots) and shots[0] > 0:
        shot_t.insert(0, float(times_s[0]))
    ax.step(times_s, shots, where="post", color="#1f77b4", lw=1.2)
    for t in shot_t:
        ax.axvline(t, color="#1f77b4", alpha=0.5, lw=1)
    if not shot_t:
        ax.text(0.5, 0.5, L("no_shots"), ha="center", va="center", transform=ax.transAxes, color="#555")
    ax.set_xlim(0, max(end_s, 1.0))
    ax.set_ylim(0, max(float(shots.max()) if len(shots) else 0.0, 1.0) + 0.5)
    ax.set_xlabel(L("clock_s"))
    ax.set_ylabel(L("shots"))
    return _svg(fig)


def trajectory_svg(tip_ras: np.ndarray, instruments: Sequence[str], outlines: Sequence[tuple[str, str, np.ndarray]],
                   highlight: set[str], contacts_ras: np.ndarray, L: Callable[[str], str]) -> str:
    """The tip path in AP (x right, z superior) and lateral (y anterior, z superior) projections over
    the anatomy, patient RAS mm. ``outlines``: (structure, tissue, triangles (n, 3, 3) mm), those named in
    ``highlight`` (the risk structures) drawn darker; ``contacts_ras``: (k, 3)."""
    from matplotlib.collections import PolyCollection

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.6))
    pts = tip_ras[np.isfinite(tip_ras).all(axis=1)] if len(tip_ras) else np.zeros((0, 3))
    lo = pts.min(axis=0) if len(pts) else None
    hi = pts.max(axis=0) if len(pts) else None
    for ax, (i, j), title, xl in ((axes[0], (0, 2), L("ap"), L("right_left_mm")),
                                  (axes[1], (1, 2), L("lateral"), L("post_ant_mm"))):
        order = list(TISSUE_RGBA)
        ranked = sorted(outlines, key=lambda o: (order.index(o[1]) if o[1] in order else -1, o[0] in highlight))
        depth = 3 - i - j  # the projection's viewing axis: only the triangles facing the viewer draw the outline
        for name, tissue, all_tris in ranked:
            n = np.cross(all_tris[:, 1] - all_tris[:, 0], all_tris[:, 2] - all_tris[:, 0])
            tris = all_tris[n[:, depth] >= 0.0]
            rgba = TISSUE_RGBA.get(tissue, (0.9, 0.9, 0.9, 1.0))
            if name in highlight:
                rgba = (rgba[0] * 0.85, rgba[1] * 0.7, rgba[2] * 0.5, 1.0)
            pc = PolyCollection(list(tris[:, :, [i, j]]), facecolors=[rgba], edgecolors="none",
                                antialiaseds=False, rasterized=True)
            ax.add_collection(pc)
        if len(pts):
            used = [n for n, ok in zip(instruments, np.isfinite(tip_ras).all(axis=1)) if ok]
            for k, name in enumerate(dict.fromkeys(used)):
                sel = np.array([n == name for n in used])
                seg = np.where(sel, 1.0, np.nan)
                ax.plot(pts[:, i] * seg, pts[:, j] * seg, color=CURVE_COLOURS[k % len(CURVE_COLOURS)], lw=1.3,
                        label=name)
            ax.plot(pts[-1, i], pts[-1, j], "o", color="black", ms=4)
        if len(contacts_ras):
            ax.plot(contacts_ras[:, i], contacts_ras[:, j], "x", color="#d62728", ms=8, mew=2, label=L("contact"))
        if lo is not None and hi is not None:
            pad = 25.0
            ax.set_xlim(lo[i] - pad, hi[i] + pad)
            ax.set_ylim(lo[j] - pad, hi[j] + pad)
        else:
            ax.autoscale_view()
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.set_ylabel(L("inf_sup_mm"))
    if len(pts):
        axes[1].legend(loc="upper right", fontsize=7, frameon=False)
    return _svg(fig)


def progress_svg(labels: Sequence[str], scores: Sequence[float | None], times_s: Sequence[float | None],
                 pass_mark: float | None, L: Callable[[str], str]) -> str:
    """Score (with the pass mark) and total time per attempt, in recording order."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 3.0))
    x = np.arange(1, len(labels) + 1)
    a1.plot(x, [np.nan if s is None else s for s in scores], "o-", color="#1f77b4")
    if pass_mark is not None:
        a1.axhline(pass_mark, color="#d62728", ls="--", lw=1, label=L("pass_mark"))
        a1.legend(fontsize=8, frameon=False)
    a1.set_ylim(0, 100)
    a1.set_ylabel(L("score"))
    a2.plot(x, [np.nan if t is None else t for t in times_s], "s-", color="#2ca02c")
    a2.set_ylabel(L("time_s"))
    for a in (a1, a2):
        a.set_xticks(x)
        a.set_xlabel(L("attempt"))
    return _svg(fig)


def angles_svg(times_s: np.ndarray, angles: dict[str, np.ndarray], bands: dict[str, tuple[float, float]],
               L: Callable[[str], str]) -> str:
    """The instrument's named trajectory angles (deg) over run time, each scenario target range shaded."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.0, 2.6))
    for k, (name, a) in enumerate(angles.items()):
        c = CURVE_COLOURS[(k + 3) % len(CURVE_COLOURS)]
        ax.plot(times_s, a, color=c, lw=1.3, label=name)
        if name in bands:
            lo, hi = bands[name]
            ax.axhspan(lo, hi, color=c, alpha=0.12, label=f"{name}: {L('target_range')} [{lo:g}, {hi:g}]")
    if not angles:
        ax.text(0.5, 0.5, L("no_angles"), ha="center", va="center", transform=ax.transAxes, color="#555")
    else:
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_xlabel(L("clock_s"))
    ax.set_ylabel(L("angle_deg"))
    return _svg(fig)
