"""The gate every received message passes: size limit, rate limits (token buckets per
type, "*" for the whole peer), parse and validate against :mod:`remote.schema`; it counts
what it drops."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, TypeAdapter, ValidationError

from remote.schema import CONSOLE_ADAPTER, MAX_DATA_MESSAGE_BYTES, MAX_SIGNAL_MESSAGE_BYTES, SIGNAL_ADAPTER


@dataclass
class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up."""

    rate_per_s: float
    burst: float
    tokens: float = -1.0
    last_s: float = 0.0

    def take(self, now_s: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.last_s = self.burst, now_s
        self.tokens = min(self.burst, self.tokens + (now_s - self.last_s) * self.rate_per_s)
        self.last_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# per-type limits (messages a second, burst); "*" is the overall limit for one peer
DEFAULT_CONSOLE_RATES: dict[str, tuple[float, float]] = {
    "*": (120.0, 240.0),
    "laser": (40.0, 60.0),
    "stroke": (20.0, 40.0),
    "pin": (10.0, 20.0),
    "note": (5.0, 10.0),
    "hold": (20.0, 40.0),
    "release": (20.0, 40.0),
    "undo": (10.0, 20.0),
    "clear": (5.0, 10.0),
    "sync": (2.0, 5.0),
    "view": (2.0, 5.0),
    "hb": (5.0, 10.0),
    "hb_ack": (5.0, 10.0),
}
DEFAULT_SIGNAL_RATES: dict[str, tuple[float, float]] = {"*": (60.0, 200.0)}


@dataclass
class MessageGate:
    """Size limit, rate limits, parse and validate; counts everything it drops.

    ``counters`` keys: received, accepted, oversized, rate_limited, malformed,
    unknown_type, bad_version, binary."""

    adapter: TypeAdapter
    max_bytes: int
    rates: dict[str, tuple[float, float]]
    counters: Counter = field(default_factory=Counter)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    @classmethod
    def for_console(cls, rates: dict[str, tuple[float, float]] | None = None) -> MessageGate:
        return cls(CONSOLE_ADAPTER, MAX_DATA_MESSAGE_BYTES, dict(DEFAULT_CONSOLE_RATES if rates is None else rates))

    @classmethod
    def for_signal(cls, rates: dict[str, tuple[float, float]] | None = None) -> MessageGate:
        return cls(SIGNAL_ADAPTER, MAX_SIGNAL_MESSAGE_BYTES, dict(DEFAULT_SIGNAL_RATES if rates is None else rates))

    def _allow(self, key: str, now_s: float) -> bool:
        rate = self.rates.get(key)
        if rate is None:
            return True
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = TokenBucket(*rate)
        return b.take(now_s)

    def admit(self, raw: object, now_s: float | None = None) -> BaseModel | None:
        """The validated message, or None (dropped and counted)."""
        self.counters["received"] += 1
        if not isinstance(raw, str):
            self.counters["binary"] += 1
            return None
        if len(raw) > self.max_bytes or len(raw.encode("utf-8", "surrogatepass")) > self.max_bytes:
            self.counters["oversized"] += 1
            return None
        now = time.monotonic() if now_s is None else now_s
        if not self._allow("*", now):
            self.counters["rate_limited"] += 1
            return None
        try:
            msg = self.adapter.validate_json(raw)
        except ValidationError as e:
            self.counters[_classify(e)] += 1
            return None
        except Exception:  # noqa: BLE001 - recursion, unicode: whatever a hostile peer finds
            self.counters["malformed"] += 1
            return None
        if not self._allow(msg.type, now):
            self.counters["rate_limited"] += 1
            return None
        self.counters["accepted"] += 1
        return msg

    @property
    def dropped(self) -> int:
        c = self.counters
        return c["received"] - c["accepted"]


def _classify(e: ValidationError) -> str:
    try:
        errs = e.errors(include_url=False, include_input=False)
    except Exception:  # noqa: BLE001
        return "malformed"
    if not errs:
        return "malformed"
    first = errs[0]
    if first.get("type") == "union_tag_invalid":
        return "unknown_type"
    loc = first.get("loc") or ()
    if len(loc) == 2 and loc[1] == "v":
        return "bad_version"
    return "malformed"
