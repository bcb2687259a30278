"""Scenario notices from the frame loop to every viewer: the ``status`` message.

The loop hands notices (JSON-ready dicts, :class:`vr_trainer.app.bridge.NoticeSink`) to a
:class:`NoticeRelay` on its own thread: a bounded queue (the oldest transient notice is
dropped and counted when full; ``step_started`` and ``run_finished`` go last) that wakes
the network thread once per batch. There a
:class:`StatusBoard` checks and cuts every notice down to the schema's limits
(:func:`sanitize_notice`: unknown kinds, wrong types and non-finite numbers are refused and
counted; long text is cut with an ellipsis; control characters and lone surrogates are
removed), keeps the current step, its prompt, the latest hint and the result, and builds
:class:`~remote.schema.StatusMsg` messages: one (or a few) per batch for every viewer, and
a snapshot with the latest notices for a viewer who joins later.
"""

from __future__ import annotations

import math
import threading
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any, get_args

from remote.schema import (
    MAX_DATA_MESSAGE_BYTES,
    MAX_STATUS_ID_CHARS,
    MAX_STATUS_NOTICES,
    MAX_STATUS_TEXT_CHARS,
    MAX_STEPS,
    NoticeKind,
    RunOutcome,
    StatusMsg,
    StatusNotice,
    encode,
    make,
)

KINDS = frozenset(get_args(NoticeKind))
KEPT_APART = ("step_started", "run_finished")  # they define the state: dropped last
SILENT_KINDS = frozenset({"haptic", "sound", "overlay", "event"})  # sent, but not replayed to a late joiner
RELAY_MAXLEN = 256
ELLIPSIS = "…"
# control, surrogate, unassigned, private use and format characters (bidi overrides,
# invisible marks), except the joiners that emoji and some scripts need
_REMOVED_CATEGORIES = frozenset({"Cc", "Cs", "Cn", "Co", "Cf"})
_JOINERS = frozenset({"\u200c", "\u200d"})


def clean_text(value: object, max_chars: int = MAX_STATUS_TEXT_CHARS) -> str | None:
    """``value`` as display text of at most ``max_chars`` characters (cut with an ellipsis),
    without control characters or lone surrogates (newlines and tabs become spaces);
    None when it is not a string or nothing is left."""
    if not isinstance(value, str):
        return None
    head = value[: 2 * max_chars + 1]  # clean a bounded prefix, however long the text
    out = []
    for ch in head:
        if ch in "\n\t\r":
            out.append(" ")
        elif unicodedata.category(ch) not in _REMOVED_CATEGORIES or ch in _JOINERS:
            out.append(ch)
    text = "".join(out).strip()
    cut = len(value) > len(head) or len(text) > max_chars
    if cut:
        text = text[: max_chars - 1].rstrip() + ELLIPSIS
    return text or None


def _int(value: object, hi: int = MAX_STEPS) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= hi else None


def _float(value: object, lo: float, hi: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) and lo <= v <= hi else None


def sanitize_notice(raw: object) -> StatusNotice | None:
    """The notice as the schema allows it, or None when it cannot be one (not a mapping,
    unknown kind). Never raises."""
    try:
        if not isinstance(raw, Mapping):
            return None
        kind = raw.get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            return None
        passed = raw.get("passed")
        fields: dict[str, Any] = {
            "kind": kind, "time_s": _float(raw.get("time_s"), -1e9, 1e9) or 0.0,
            "text_en": clean_text(raw.get("text_en")), "text_zh": clean_text(raw.get("text_zh")),
            "step_id": clean_text(raw.get("step_id"), MAX_STATUS_ID_CHARS),
            "event_id": clean_text(raw.get("event_id"), MAX_STATUS_ID_CHARS),
            "critical_error": clean_text(raw.get("critical_error"), MAX_STATUS_ID_CHARS),
            "step_index": _int(raw.get("step_index")), "step_count": _int(raw.get("step_count")),
            "score": _float(raw.get("score"), 0.0, 100.0), "passed": passed if isinstance(passed, bool) else None,
            "pass_mark": _float(raw.get("pass_mark"), 0.0, 100.0),
        }
        return StatusNotice.model_validate(fields)
    except Exception:  # noqa: BLE001 - whatever arrives, the bridge goes on
        return None


class NoticeRelay:
    """The :class:`~vr_trainer.app.bridge.NoticeSink` of a bridge: ``publish_notice`` (loop
    thread) queues a shallow copy and calls ``wake`` once until the next :meth:`drain`
    (network thread). At most ``maxlen`` notices wait; beyond that the oldest transient one
    (hint, prompt, event, ...) is dropped and counted in :attr:`dropped`, so a
    ``step_started`` or ``run_finished`` goes only when nothing else is left to drop, and
    then the oldest of them."""

    def __init__(self, wake: Callable[[], None], maxlen: int = RELAY_MAXLEN) -> None:
        self._wake = wake
        self._maxlen = max(1, maxlen)
        self._lock = threading.Lock()
        self._q: deque[dict[str, Any]] = deque()
        self._woken = False
        self.dropped = 0
        self.published = 0

    def publish_notice(self, notice: dict[str, Any]) -> None:
        item = dict(notice) if isinstance(notice, Mapping) else {"kind": None}
        with self._lock:
            self.published += 1
            if len(self._q) >= self._maxlen:
                self._drop_one()
            self._q.append(item)
            wake = not self._woken
            self._woken = True
        if wake:
            self._wake()

    def _drop_one(self) -> None:
        for i, waiting in enumerate(self._q):
            if waiting.get("kind") not in KEPT_APART:
                del self._q[i]
                break
        else:
            self._q.popleft()
        self.dropped += 1

    def drain(self) -> list[dict[str, Any]]:
        """Everything waiting, in the order it was published."""
        with self._lock:
            items = list(self._q)
            self._q.clear()
            self._woken = False
        return items


class StatusBoard:
    """Network-thread state of the scenario as viewers see it; builds ``status`` messages.

    ``counters``: notices ``accepted`` and ``refused`` (not a notice: unknown kind, not a
    mapping)."""

    def __init__(self, kept: int = MAX_STATUS_NOTICES) -> None:
        self.step_index: int | None = None
        self.step_count = 0
        self.step_id: str | None = None
        self.prompt: tuple[str | None, str | None] = (None, None)
        self.hint: tuple[str | None, str | None] = (None, None)
        self.result: RunOutcome | None = None
        self.recent: deque[StatusNotice] = deque(maxlen=kept)
        self.counters: Counter = Counter()
        self.seen = False

    def ingest(self, raw_items: list[dict[str, Any]], dropped: int = 0) -> list[StatusMsg]:
        """Apply notices in order; the ``status`` messages to send every viewer (none if
        nothing valid arrived)."""
        fresh: list[StatusNotice] = []
        for raw in raw_items:
            n = sanitize_notice(raw)
            if n is None:
                self.counters["refused"] += 1
                continue
            self.counters["accepted"] += 1
            self._apply(n)
            fresh.append(n)
            if n.kind not in SILENT_KINDS:
                self.recent.append(n)
        if not fresh:
            return []
        self.seen = True
        chunks = [fresh[i:i + MAX_STATUS_NOTICES] for i in range(0, len(fresh), MAX_STATUS_NOTICES)]
        return [self._message(chunk, replay=False, dropped=dropped) for chunk in chunks]

    def snapshot(self, dropped: int = 0) -> StatusMsg | None:
        """The current state and the latest notices, for a viewer who just joined (None
        before the first notice)."""
        return self._message(list(self.recent), replay=True, dropped=dropped) if self.seen else None

    def _apply(self, n: StatusNotice) -> None:
        if n.step_count is not None:
            self.step_count = n.step_count
        if n.kind == "step_started":
            self.step_index = n.step_index if n.step_index is not None else (self.step_index or 0)
            self.step_id = n.step_id
            self.prompt = (n.text_en, n.text_zh)
            self.hint = (None, None)
        elif n.kind == "hint" and (n.step_id is None or n.step_id == self.step_id):
            self.hint = (n.text_en, n.text_zh)
        elif n.kind in ("step_completed", "step_failed") and n.step_id == self.step_id:
            idx = n.step_index if n.step_index is not None else self.step_index
            if idx is not None and idx + 1 >= self.step_count:  # the last step: no next step_started follows
                self._finish_steps()
        elif n.kind == "run_finished":
            self._finish_steps()
            if n.score is not None and n.passed is not None:
                self.result = RunOutcome(score=n.score, passed=n.passed, pass_mark=n.pass_mark)

    def _finish_steps(self) -> None:
        self.step_index = self.step_count
        self.step_id = None
        self.prompt = self.hint = (None, None)

    def _message(self, notices: list[StatusNotice], replay: bool, dropped: int) -> StatusMsg:
        msg = make(StatusMsg, step_index=self.step_index, step_count=self.step_count, step_id=self.step_id,
                   prompt_en=self.prompt[0], prompt_zh=self.prompt[1], hint_en=self.hint[0], hint_zh=self.hint[1],
                   result=self.result, notices=notices, replay=replay, dropped=dropped)
        while len(encode(msg).encode("utf-8")) > MAX_DATA_MESSAGE_BYTES and msg.notices:  # cannot happen by
            msg = msg.model_copy(update={"notices": msg.notices[1:]})  # the limits; kept as a guard
            self.counters["cut_for_size"] += 1
        return msg
