"""The scenario engine: ordered steps, events, metrics and the score of one run. Pure: no clock,
no GL, no threads; it sees only :class:`~vr_trainer.sim.observation.Observation` values.

    engine = ScenarioEngine(scenario, names)   # names: ScenarioNames.from_scenario(scenario, bundle_structures)
    notices = engine.update(obs)               # once per fixed simulation step -> list[Notice]
    engine.messages(now_s)                     # what the panels show now
    engine.result().to_summary()               # score, passed, metrics, steps, events, critical errors

Each ``update`` does, in this order: start the first step (first call); collect the step's
actions; count a change to an instrument the current step does not allow (a ``prompt``);
fire events whose ``when`` rose from false to true (respecting ``once`` and ``cooldown_s``)
and apply their effects; complete the current step if its ``complete_when`` holds (the next
step starts at once and is checked from the next fixed step on); show hints whose delay
passed; update every metric accumulator. Steps end the run's step sequence when all are
completed or failed (``finished``); events and metrics keep running until the app stops.

Clocks: ``Notice.time_s`` and ``messages(now_s)`` use the observation clock (``obs.time_s``);
results (step, event and error times) use run seconds, counted from the start of the first
fixed step (``first obs.time_s - first obs.dt_s``). They coincide when the simulation starts at 0.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Sequence

from vr_trainer.scenario.conditions import (EvalContext, Pred, ScenarioNames, compile_condition, first_reached_target,
                                            nodes, parse, referenced_structures, referenced_targets)
from vr_trainer.scenario.conditions import Value as ValueNode
from vr_trainer.scenario.metrics import (CriticalErrorRecord, MetricAccumulator, MetricContext, MetricDef,
                                         StepRecord, get_metric, metrics_for)
from vr_trainer.scenario.schema import Event, HapticEffect, LocalizedText, OverlayEffect, Scenario, Step
from vr_trainer.scenario.scoring import (CriticalErrorResult, EventResult, MetricResult, RunResult, StepResult,
                                         fail_reasons, score_rubric)
from vr_trainer.sim.observation import Observation

NoticeKind = Literal["step_started", "step_completed", "step_failed", "hint", "prompt", "haptic", "sound",
                     "overlay", "critical_error", "event"]
PROMPT_SHOW_S = 5.0  # event and wrong-instrument prompts stay in messages() this long
WRONG_USE_WITHIN_MM = 20.0  # a disallowed instrument counts as used once its tip comes this close to the step's target


@dataclass(frozen=True)
class Notice:
    """Something that happened in one fixed step, for the panels, the backend and the mentor console.
    ``time_s`` is on the observation clock. ``text`` is what to show (prompts, hints, step prompts,
    critical error descriptions); ``haptic``/``sound``/``overlay`` are set on those kinds."""

    kind: NoticeKind
    time_s: float
    text: LocalizedText | None = None
    step_id: str | None = None
    event_id: str | None = None
    haptic: HapticEffect | None = None
    sound: str | None = None
    overlay: OverlayEffect | None = None
    critical_error: str | None = None


class _EventState:
    __slots__ = ("event", "pred", "prev", "last_fired_s", "count")

    def __init__(self, event: Event, pred: Pred) -> None:
        self.event, self.pred = event, pred
        self.prev = False
        self.last_fired_s = -math.inf
        self.count = 0


class ScenarioEngine:
    """Runs one scenario over a stream of observations; also the :class:`RunView` metrics read."""

    def __init__(self, scenario: Scenario, names: ScenarioNames | None = None) -> None:
        self.scenario = scenario
        self.names = names if names is not None else ScenarioNames.from_scenario(scenario)
        steps_ast = [parse(s.complete_when) for s in scenario.steps]
        events_ast = [parse(e.when) for e in scenario.events]
        self._step_preds = [compile_condition(a, self.names) for a in steps_ast]
        self._events = [_EventState(e, compile_condition(a, self.names)) for e, a in zip(scenario.events, events_ast)]
        self._records = [StepRecord(s.id, s.time_allowance_s, first_reached_target(a))
                         for s, a in zip(scenario.steps, steps_ast)]
        self._allowed = [frozenset(s.instruments) for s in scenario.steps]
        self._labels = {i.id: (i.label.en if i.label else i.id.replace("_", " ")) for i in scenario.instruments}
        self._labels_zh = {i.id: ((i.label.zh or i.label.en) if i.label else i.id) for i in scenario.instruments}
        self._errors_desc = {c.id: c.description for c in scenario.rubric.critical_errors}
        self._step_index = 0
        self._t0: float | None = None
        self._now_s = 0.0  # run seconds
        self._obs_time_s = 0.0
        self._finished_at_s: float | None = None
        self._fired: dict[str, int] = {}
        self._event_log: list[EventResult] = []
        self._critical: list[CriticalErrorRecord] = []
        self._hints_shown = 0
        self._wrong_uses = 0
        self._wrong_counted = False  # the instrument held now was already counted as a wrong use
        self._hint_next = 0  # index of the current step's next hint
        self._shown_hints: list[Notice] = []
        self._recent: deque[Notice] = deque(maxlen=32)
        self._step_started_obs_s = 0.0
        self._last_instrument: str | None = None
        # metrics: the rubric's, those conditions read, and every other one of the procedure (reported, not scored)
        wanted = [m.metric for m in scenario.rubric.metrics]
        wanted += [n.arg for a in steps_ast + events_ast for n in nodes(a)
                   if isinstance(n, ValueNode) and n.fn == "metric" and n.arg]
        wanted += [d.name for d in metrics_for(scenario.procedure)]
        mctx = MetricContext.build(scenario, self.names)
        self._defs: dict[str, MetricDef] = {}
        for name in wanted:
            if name not in self._defs:
                self._defs[name] = get_metric(name, scenario.procedure)
        self._acc: dict[str, MetricAccumulator] = {n: d.factory(mctx) for n, d in self._defs.items()}
        self._accs = tuple(self._acc.values())
        asts = steps_ast + events_ast
        self._needed_structures = frozenset().union(*(referenced_structures(a, self.names) for a in asts),
                                                    (r.structure for r in scenario.risk_structures))
        self._needed_targets = frozenset().union(*(referenced_targets(a, self.names) for a in asts),
                                                 (r.focus_target for r in self._records if r.focus_target))
        self._ctx = EvalContext(Observation(time_s=0.0, dt_s=0.0), metric_value=self._metric_value)

    # ------------------------------------------------------------ RunView
    @property
    def elapsed_s(self) -> float:
        return self._now_s

    @property
    def finished_at_s(self) -> float | None:
        return self._finished_at_s

    @property
    def step_records(self) -> Sequence[StepRecord]:
        return self._records

    @property
    def fired_count(self) -> Mapping[str, int]:
        return self._fired

    @property
    def critical_errors(self) -> Sequence[CriticalErrorRecord]:
        return self._critical

    @property
    def hints_shown(self) -> int:
        return self._hints_shown

    @property
    def wrong_instrument_uses(self) -> int:
        return self._wrong_uses

    # ------------------------------------------------------------ state
    @property
    def step_index(self) -> int:
        """Index of the current step (== number of steps once finished)."""
        return self._step_index

    @property
    def current_step(self) -> Step | None:
        return self.scenario.steps[self._step_index] if not self.finished else None

    @property
    def finished(self) -> bool:
        """Every step was completed or failed."""
        return self._step_index >= len(self.scenario.steps)

    @property
    def focus_target(self) -> str | None:
        """The first reached() target of the current step's completion condition (None if none)."""
        return None if self.finished else self._records[self._step_index].focus_target

    @property
    def needed_structures(self) -> frozenset[str]:
        """Bundle structure names whose signed distance (``Observation.structure_distance_mm``,
        ``tip_inside``, ``removed_pct``) the conditions and metrics read: every structure a condition
        names (resolved) plus every risk structure."""
        return self._needed_structures

    @property
    def needed_targets(self) -> frozenset[str]:
        """Target ids whose tip distance (``Observation.target_distance_mm``) the conditions and
        metrics read: every reached()/distance() target plus each step's focus target."""
        return self._needed_targets

    def _metric_value(self, name: str) -> float:
        acc = self._acc.get(name)
        return acc.value() if acc is not None else math.nan

    # ------------------------------------------------------------ one fixed step
    def update(self, obs: Observation) -> list[Notice]:
        """Advance by one fixed simulation step; returns what happened (possibly nothing)."""
        if self._t0 is None:
            self._t0 = obs.time_s - obs.dt_s
        now = obs.time_s - self._t0
        self._now_s, self._obs_time_s = now, obs.time_s
        ctx = self._ctx
        ctx.obs, ctx.elapsed_s = obs, now
        out: list[Notice] = []
        if self._step_index == 0 and self._records and self._records[0].started_s is None:
            self._start_step(0, out)
        if not self.finished:
            if obs.actions:
                ctx.step_actions.update(obs.actions)
            ctx.step_elapsed_s = now - (self._records[self._step_index].started_s or 0.0)
        inst = obs.instrument_id
        if inst != self._last_instrument:
            self._last_instrument, self._wrong_counted = inst, False
        if inst is not None and not self.finished and not self._wrong_counted:
            allowed = self._allowed[self._step_index]
            if allowed and inst not in allowed:
                # picking a tool up on the way to the right one is no error; bringing it to the target is
                target = self._records[self._step_index].focus_target
                if target is None or obs.target_distance_mm.get(target, math.inf) <= WRONG_USE_WITHIN_MM:
                    self._wrong_counted = True
                    self._wrong_instrument(inst, allowed, out)
        step_before = self._step_index
        for ev in self._events:
            value = ev.pred(ctx)
            if value and not ev.prev and (not ev.event.once or ev.count == 0) \
                    and now - ev.last_fired_s >= ev.event.cooldown_s:
                self._fire(ev, out)
            ev.prev = value
        if not self.finished and self._step_index == step_before and self._step_preds[self._step_index](ctx):
            self._end_step(completed=True, out=out)
        if not self.finished:
            self._due_hints(out)
        for acc in self._accs:
            acc.update(obs, self)
        return out

    def _start_step(self, i: int, out: list[Notice]) -> None:
        self._step_index = i
        if i >= len(self._records):
            self._finished_at_s = self._now_s
            return
        rec = self._records[i]
        rec.started_s = self._now_s
        self._step_started_obs_s = self._obs_time_s
        self._wrong_counted = i > 0  # the previous step's tool, still in hand, is exempt until it is put down
        self._hint_next = 0
        self._shown_hints.clear()
        self._ctx.step_actions.clear()
        self._ctx.step_elapsed_s = 0.0
        step = self.scenario.steps[i]
        out.append(Notice("step_started", self._obs_time_s, step.prompt, step_id=step.id))

    def _end_step(self, completed: bool, out: list[Notice]) -> None:
        rec = self._records[self._step_index]
        rec.ended_s = self._now_s
        rec.completed, rec.failed = completed, not completed
        if completed:
            self._ctx.steps_done.add(rec.id)
        else:
            self._ctx.steps_failed.add(rec.id)
        out.append(Notice("step_completed" if completed else "step_failed", self._obs_time_s, step_id=rec.id))
        self._start_step(self._step_index + 1, out)

    def _due_hints(self, out: list[Notice]) -> None:
        hints = self.scenario.steps[self._step_index].hints
        while self._hint_next < len(hints) and self._ctx.step_elapsed_s >= hints[self._hint_next].after_s:
            n = Notice("hint", self._obs_time_s, hints[self._hint_next].text,
                       step_id=self._records[self._step_index].id)
            self._hint_next += 1
            self._hints_shown += 1
            self._shown_hints.append(n)
            out.append(n)

    def _wrong_instrument(self, inst: str, allowed: frozenset[str], out: list[Notice]) -> None:
        self._wrong_uses += 1
        names_en = ", ".join(self._labels.get(a, a) for a in sorted(allowed))
        names_zh = "、".join(self._labels_zh.get(a, a) for a in sorted(allowed))
        text = LocalizedText(en=f"This step uses the {names_en}, not the {self._labels.get(inst, inst)}",
                             zh=f"本步骤应使用{names_zh}，而不是{self._labels_zh.get(inst, inst)}")
        n = Notice("prompt", self._obs_time_s, text, step_id=self._records[self._step_index].id)
        self._recent.append(n)
        out.append(n)

    def _fire(self, ev: _EventState, out: list[Notice]) -> None:
        e = ev.event
        ev.count += 1
        ev.last_fired_s = self._now_s
        self._fired[e.id] = ev.count
        step_id = None if self.finished else self._records[self._step_index].id
        self._event_log.append(EventResult(e.id, self._now_s, step_id))
        t = self._obs_time_s
        out.append(Notice("event", t, step_id=step_id, event_id=e.id))
        for eff in e.effects:
            n: Notice | None = None
            if eff.prompt is not None:
                n = Notice("prompt", t, eff.prompt, step_id=step_id, event_id=e.id)
                self._recent.append(n)
            elif eff.haptic is not None:
                n = Notice("haptic", t, step_id=step_id, event_id=e.id, haptic=eff.haptic)
            elif eff.sound is not None:
                n = Notice("sound", t, step_id=step_id, event_id=e.id, sound=eff.sound)
            elif eff.overlay is not None:
                n = Notice("overlay", t, step_id=step_id, event_id=e.id, overlay=eff.overlay)
            elif eff.critical_error is not None:
                desc = self._errors_desc.get(eff.critical_error)
                self._critical.append(CriticalErrorRecord(eff.critical_error, self._now_s, desc))
                n = Notice("critical_error", t, desc, step_id=step_id, event_id=e.id,
                           critical_error=eff.critical_error)
                self._recent.append(n)
            elif eff.fail_step and not self.finished:
                self._end_step(completed=False, out=out)
            if n is not None:
                out.append(n)

    # ------------------------------------------------------------ readouts
    def messages(self, now_s: float) -> list[Notice]:
        """What the panels show at ``now_s`` (observation clock): the current step's prompt (kind
        ``prompt`` with ``step_id`` and no ``event_id``), its hints whose delay passed, and event,
        critical-error and wrong-instrument prompts from the last :data:`PROMPT_SHOW_S` seconds."""
        out: list[Notice] = []
        if not self.finished:
            step = self.scenario.steps[self._step_index]
            out.append(Notice("prompt", self._step_started_obs_s, step.prompt, step_id=step.id))
            out.extend(self._shown_hints)
        out.extend(n for n in self._recent if 0.0 <= now_s - n.time_s <= PROMPT_SHOW_S)
        return out

    def live_metrics(self) -> dict[str, float]:
        """Every tracked metric's value now (NaN: undefined so far; inf: never measured)."""
        return {name: acc.value() for name, acc in self._acc.items()}

    def result(self) -> RunResult:
        """Score the run so far against the rubric (call at the end of the run)."""
        values = self.live_metrics()
        rubric = self.scenario.rubric
        score, per = score_rubric(rubric, values)
        in_rubric = {m.metric: m for m in rubric.metrics}
        order = list(in_rubric) + [n for n in self._defs if n not in in_rubric]
        metrics = []
        for name in order:
            d, rm = self._defs[name], in_rubric.get(name)
            metrics.append(MetricResult(name, values[name], d.unit, d.definition, d.source,
                                        rm.weight if rm else None, per[name] if rm else None,
                                        rm.full_marks_at if rm else None, rm.zero_marks_at if rm else None))
        steps = tuple(StepResult(r.id, r.duration_s(self._now_s), r.completed, r.failed, r.overtime_s(self._now_s),
                                 r.started_s, r.ended_s) for r in self._records)
        locale = self.scenario.locale
        errors = tuple(CriticalErrorResult(c.id, c.time_s, c.description.text(locale) if c.description else c.id)
                       for c in self._critical)
        reasons = fail_reasons(rubric, score, steps, errors)
        return RunResult(score, not reasons, rubric.pass_mark, tuple(metrics), steps, tuple(self._event_log), errors,
                         reasons)


def run_stream(scenario: Scenario, observations: Iterable[Observation],
               names: ScenarioNames | None = None) -> RunResult:
    """Feed a finished stream of observations through a fresh engine and score it (replay, tests)."""
    engine = ScenarioEngine(scenario, names)
    for obs in observations:
        engine.update(obs)
    return engine.result()
