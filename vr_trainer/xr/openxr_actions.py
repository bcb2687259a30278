"""Actions for both hands: grip and aim poses, trigger, squeeze, two buttons and haptics,
with suggested bindings for the common controllers (:data:`BINDINGS`); sampled once a
frame into the frame contract's :class:`~vr_trainer.frame.InputState`."""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np
import xr

from vr_trainer.frame import HandInput, InputState
from vr_trainer.xr.openxr_spaces import ReferenceSpaces
from vr_trainer.xr.openxr_support import BINDINGS, HANDS, ReleaseStack

log = logging.getLogger(__name__)

_T = xr.ActionType
ACTION_TYPES = {"grip_pose": _T.POSE_INPUT, "aim_pose": _T.POSE_INPUT, "trigger": _T.FLOAT_INPUT,
                "squeeze": _T.FLOAT_INPUT, "primary": _T.BOOLEAN_INPUT, "secondary": _T.BOOLEAN_INPUT,
                "haptic": _T.VIBRATION_OUTPUT}


class HandActions:
    """The action set, its actions and per-hand pose spaces, attached to a session.

    ``profiles_accepted`` / ``profiles_rejected`` say which interaction profiles the
    runtime took bindings for (rejected: profile -> error name)."""

    def __init__(self, instance: Any, session: Any, releases: ReleaseStack) -> None:
        self.session = session
        self.hand_paths = [xr.string_to_path(instance, p) for p in HANDS]
        self.action_set = xr.create_action_set(instance, xr.ActionSetCreateInfo(
            action_set_name="vr_trainer", localized_action_set_name="VR Trainer", priority=0))
        releases.runtime(xr.destroy_action_set, self.action_set)  # destroys its actions too
        self.actions: dict[str, Any] = {}
        for name, kind in ACTION_TYPES.items():
            self.actions[name] = xr.create_action(self.action_set, xr.ActionCreateInfo(
                action_type=kind, action_name=name, localized_action_name=name.replace("_", " "),
                count_subaction_paths=2, subaction_paths=(xr.Path * 2)(*self.hand_paths)))
        self.profiles_accepted: list[str] = []
        self.profiles_rejected: dict[str, str] = {}
        self._suggest_bindings(instance)
        self.hand_spaces: dict[str, list[Any]] = {}
        for pose in ("grip_pose", "aim_pose"):
            spaces = []
            for path in self.hand_paths:
                space = xr.create_action_space(session, xr.ActionSpaceCreateInfo(
                    action=self.actions[pose], subaction_path=path, pose_in_action_space=xr.Posef()))
                releases.runtime(xr.destroy_space, space)
                spaces.append(space)
            self.hand_spaces[pose] = spaces
        xr.attach_session_action_sets(session, xr.SessionActionSetsAttachInfo(
            count_action_sets=1, action_sets=ctypes.pointer(self.action_set)))
        self.active_hand = 1  # the hand that last pulled trigger or squeeze drives the instrument
        self.haptics_sent = 0
        self._last_aims: list[np.ndarray | None] = [None, None]

    def _suggest_bindings(self, instance: Any) -> None:
        for profile, table in BINDINGS.items():
            suggested = []
            for action, comp in table.items():
                for side, hand in zip(("left", "right"), HANDS):
                    c = comp[side] if isinstance(comp, dict) else comp
                    suggested.append(xr.ActionSuggestedBinding(self.actions[action],
                                                               xr.string_to_path(instance, f"{hand}/{c}")))
            try:
                xr.suggest_interaction_profile_bindings(instance, xr.InteractionProfileSuggestedBinding(
                    interaction_profile=xr.string_to_path(instance, profile),
                    count_suggested_bindings=len(suggested),
                    suggested_bindings=(xr.ActionSuggestedBinding * len(suggested))(*suggested)))
                self.profiles_accepted.append(profile)
            except xr.XrException as e:
                self.profiles_rejected[profile] = type(e).__name__

    def sample(self, focused: bool, display_time: int, spaces: ReferenceSpaces) -> InputState:
        """Sync the actions and read both hands at ``display_time`` (poses world_from_hand, mm).

        Without input focus nothing is synced: both hands come back untracked."""
        inp = InputState(hands=[HandInput(), HandInput()], active_hand=self.active_hand, focused=focused)
        if not focused:
            return inp
        xr.sync_actions(self.session, xr.ActionsSyncInfo(
            count_active_action_sets=1, active_action_sets=ctypes.pointer(xr.ActiveActionSet(self.action_set, 0))))
        aims: list[np.ndarray | None] = []
        for k, path in enumerate(self.hand_paths):
            hand = inp.hands[k]

            def get(name: str, fn: Any, path: Any = path) -> Any:
                return fn(self.session, xr.ActionStateGetInfo(action=self.actions[name], subaction_path=path))
            hand.trigger = float(get("trigger", xr.get_action_state_float).current_state)
            hand.grip = float(get("squeeze", xr.get_action_state_float).current_state)
            hand.primary_pressed = bool(get("primary", xr.get_action_state_boolean).current_state)
            hand.secondary_pressed = bool(get("secondary", xr.get_action_state_boolean).current_state)
            hand.pose_world_from_hand = spaces.locate(self.hand_spaces["grip_pose"][k], display_time)
            aims.append(spaces.locate(self.hand_spaces["aim_pose"][k], display_time))
            if hand.trigger > 0.5 or hand.grip > 0.5:
                self.active_hand = k
        if inp.hands[self.active_hand].pose_world_from_hand is None and \
                inp.hands[1 - self.active_hand].pose_world_from_hand is not None:
            self.active_hand = 1 - self.active_hand
        inp.active_hand = self.active_hand
        # the C-arm "foot pedal": B (right secondary) takes an AP shot, Y (left secondary) a lateral one
        inp.keys = frozenset(name for k, name in ((1, "carm_ap"), (0, "carm_lateral"))
                             if k < len(inp.hands) and inp.hands[k].secondary_pressed)
        self._last_aims = aims
        return inp

    def aim_poses(self) -> list[np.ndarray | None]:
        """The last sampled aim poses (world_from_aim, mm; None when untracked), left then right."""
        return list(self._last_aims)

    def haptic_pulse(self, hand: int, amplitude: float, duration_s: float, frequency_hz: float = 0.0) -> None:
        """Vibrate one hand's controller (0 left, 1 right); a refusal is logged, never raised."""
        if hand not in (0, 1):
            return
        vib = xr.HapticVibration(duration=max(1, int(duration_s * 1e9)), frequency=float(frequency_hz),
                                 amplitude=float(np.clip(amplitude, 0.0, 1.0)))
        try:
            xr.apply_haptic_feedback(self.session, xr.HapticActionInfo(
                action=self.actions["haptic"], subaction_path=self.hand_paths[hand]), vib)
            self.haptics_sent += 1
        except xr.XrException as e:
            log.debug("haptic pulse refused: %s", e)
