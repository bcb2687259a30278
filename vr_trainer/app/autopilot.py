"""`vr-trainer run --autopilot expert|novice`: a procedure planner's plan as the headless pose track.

The plan (``vr_trainer.procedures``) is in the patient frame; here it is placed in the room with
the session's ``world_from_patient``, its actions become the track's per-frame actions (the
primary button for ``next_instrument``, keys otherwise), and the head follows the scenario's demo
track, held at its last pose until the plan ends. The headless backend stops when the track
ends, so the run ends with the plan.
"""

from __future__ import annotations

import numpy as np

from vr_trainer.app.session import SessionScene
from vr_trainer.procedures.autopilot import MODES, autopilot_plan
from vr_trainer.procedures.plan import Plan
from vr_trainer.procedures.reach import PlanningContext, context_from_bundle
from vr_trainer.sim.transforms import rigid_inverse
from vr_trainer.xr.posetrack import PoseTrack


def planning_context(scene: SessionScene) -> PlanningContext:
    """What the planner reads of a built session: its visible structures, its resolved targets
    (patient RAS mm), the bundle's landmarks and the room's up direction."""
    from vr_trainer.anatomy.bundle import load_bundle

    bundle = load_bundle(scene.bundle_dir)
    patient_from_world = rigid_inverse(scene.world_from_patient)
    points = {tid: (patient_from_world @ np.append(t.point_world_mm, 1.0))[:3]
              for tid, t in scene.simulation.targets.items()}
    return context_from_bundle(scene.scenario, bundle, scene.world_from_patient, points, fps=scene.track.fps)


def plan_to_track(plan: Plan, world_from_patient: np.ndarray, head: PoseTrack) -> PoseTrack:
    """The pose track of ``plan``: tool keys in the room frame, the head of ``head`` held to the end."""
    end = plan.duration_s
    head_t, head_pos, head_look = head.head_t, head.head_pos, head.head_look
    if head_t[-1] < end:
        head_t = np.append(head_t, end)
        head_pos = np.vstack([head_pos, head_pos[-1]])
        head_look = np.vstack([head_look, head_look[-1]])
    r, t = world_from_patient[:3, :3], world_from_patient[:3, 3]
    tips = plan.tip_path_mm() @ r.T + t
    towards = np.array([k.toward_mm for k in plan.tool], float).reshape(-1, 3) @ r.T + t
    return PoseTrack(head_t, head_pos, head_look, np.array([k.t_s for k in plan.tool], float), tips, towards,
                     np.array([k.trigger for k in plan.tool], float), head.fps,
                     tuple((a.t_s, a.name) for a in plan.actions))


def autopilot_track(scene: SessionScene, mode: str, skill: float | None = None,
                    seed: int = 0) -> tuple[PoseTrack, Plan]:
    """Plan the session's scenario at ``mode`` (expert|novice) or ``skill`` (0..1) and return the
    pose track that carries it out, with the plan."""
    if mode not in MODES:
        raise ValueError(f"--autopilot must be one of {', '.join(MODES)} (got {mode!r})")
    if skill is not None and not (0.0 <= skill <= 1.0):
        raise ValueError(f"--autopilot-skill must be between 0 and 1 (got {skill})")
    plan = autopilot_plan(planning_context(scene), mode, skill, seed)
    return plan_to_track(plan, scene.world_from_patient, scene.track), plan
