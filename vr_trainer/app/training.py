"""The scenario engine in the frame loop's simulate phase.

After every fixed simulation step :class:`ScenarioRules` hands the step's
:class:`~vr_trainer.sim.observation.Observation` to the
:class:`~vr_trainer.scenario.engine.ScenarioEngine` and turns its notices into what the
resident feels, sees and hears: haptic notices (and a short pulse when a step is completed)
become pulses on the hand holding the instrument; overlay notices tint a structure for a
while; sound cues are kept for the panel (there is no audio device here) and for the summary;
the step progression is written back into the state (``step_index``, ``completed_steps``,
``focus_target``, ``tip_to_target_mm``) for the panels and ``summary.json``. The notices
themselves go back to the frame loop (``loop.notices``), for the mentor console.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Mapping

from vr_trainer.scenario.engine import Notice, ScenarioEngine
from vr_trainer.scenario.schema import LocalizedText, Scenario
from vr_trainer.sim.simulation import HapticRequest, SimState

STEP_DONE_PULSE = (0.8, 0.15)  # amplitude 0..1, seconds: the "you are there" pulse
SOUND_SHOW_S = 3.0  # how long a sound cue stays on the panel
SOUND_WORDS = {"alert": ("alert", "警报"), "warning": ("warning", "警告"), "success": ("success", "成功"),
               "pain": ("patient in pain", "患者疼痛")}
RGBA = tuple[float, float, float, float]


class ScenarioRules:
    """Runs ``engine`` after each fixed step (the frame loop's ``rules`` hook).

    ``structures`` maps every name an overlay may give (risk-structure ids, structure target
    ids, bundle structure names) to the bundle structure it highlights."""

    def __init__(self, scenario: Scenario, engine: ScenarioEngine, structures: Mapping[str, str]) -> None:
        self.scenario = scenario
        self.engine = engine
        self.step_ids = tuple(st.id for st in scenario.steps)
        self.structures = dict(structures)
        self.overlays: dict[str, tuple[RGBA, float]] = {}  # bundle structure -> (rgba, until time_s)
        self.sounds: list[tuple[float, str, str | None]] = []  # (time_s, cue, event id), every one
        self._recent_sounds: deque[tuple[float, str]] = deque(maxlen=4)

    def after_step(self, state: SimState) -> tuple[SimState, list[Notice]]:
        obs = state.observation
        if obs is None:
            return state, []
        notices = self.engine.update(obs)
        haptics = list(state.haptics)
        hand = state.active_hand
        for n in notices:
            if n.kind == "haptic" and n.haptic is not None:
                haptics.append(HapticRequest(hand, n.haptic.amplitude, n.haptic.duration_s))
            elif n.kind == "step_completed":
                haptics.append(HapticRequest(hand, *STEP_DONE_PULSE))
            elif n.kind == "sound" and n.sound is not None:
                self.sounds.append((n.time_s, n.sound, n.event_id))
                self._recent_sounds.append((n.time_s, n.sound))
            elif n.kind == "overlay" and n.overlay is not None:
                name = self.structures.get(n.overlay.structure, n.overlay.structure)
                self.overlays[name] = (n.overlay.rgba, n.time_s + n.overlay.duration_s)
        focus = self.engine.focus_target
        done = tuple(r.id for r in self.engine.step_records if r.completed)
        tip = obs.target_distance_mm.get(focus) if focus is not None else state.tip_to_target_mm
        state = dataclasses.replace(state, step_index=self.engine.step_index, completed_steps=done,
                                    focus_target=focus, tip_to_target_mm=tip, haptics=tuple(haptics))
        return state, notices

    # ---- what the panels show ----------------------------------------------------------
    def tints(self, now_s: float) -> dict[str, RGBA]:
        """Bundle structures highlighted at ``now_s`` (simulation time) and their colour."""
        return {name: rgba for name, (rgba, until) in self.overlays.items() if now_s <= until}

    def prompt_lines(self, now_s: float, locale: str) -> list[str]:
        """The step line (``n/N  prompt``), the latest hint, recent event messages and sound
        cues, in ``locale`` (``zh`` or ``en``)."""
        eng = self.engine
        zh = locale == "zh"
        steps = self.scenario.steps
        step = eng.current_step
        lines = [f"{eng.step_index + 1}/{len(steps)}  {step.prompt.text(locale)}" if step is not None
                 else ("全部步骤完成" if zh else "All steps complete")]
        msgs = eng.messages(now_s)
        if step is not None and msgs:
            msgs = msgs[1:]  # the step's own prompt comes first (shown above)
        hints = [m for m in msgs if m.kind == "hint" and m.text is not None]
        if hints:
            lines.append(("提示：" if zh else "Hint: ") + _text(hints[-1].text, locale))
        others = [m for m in msgs if m.kind != "hint" and m.text is not None]
        for m in others[-2:]:
            mark = "✖ " if m.kind == "critical_error" else "! "
            lines.append(mark + _text(m.text, locale))
        cues = [cue for t, cue in self._recent_sounds if 0.0 <= now_s - t <= SOUND_SHOW_S]
        if cues:
            words = [SOUND_WORDS.get(c, (c, c))[1 if zh else 0] for c in dict.fromkeys(cues)]
            lines.append(("♪ 声音提示：" if zh else "♪ sound: ") + ", ".join(words))
        return lines

    def cues_summary(self) -> list[dict[str, object]]:
        """Every sound cue of the run, for ``summary.json``."""
        return [{"time_s": round(t, 3), "sound": cue, "event": ev} for t, cue, ev in self.sounds]


def _text(text: LocalizedText | None, locale: str) -> str:
    return text.text(locale) if text is not None else ""
