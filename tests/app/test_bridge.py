"""The inbox between the network and the frame loop: bounded, a flood spread over frames,
latest-wins coalescing, a per-frame tick (no GL)."""

from __future__ import annotations

from vr_trainer.app.bridge import LoopView, ThreadSafeInbox


def item(log: list[str], name: str):
    def run(view: LoopView) -> None:
        log.append(name)

    return run


def run_all(inbox: ThreadSafeInbox, log: list[str]) -> list[str]:
    log.clear()
    for it in inbox.drain():
        it(None)  # type: ignore[arg-type]  # these items do not touch the view
    return list(log)


def test_full_inbox_drops_the_oldest_and_counts():
    log: list[str] = []
    inbox = ThreadSafeInbox(maxlen=3)
    for k in range(5):
        inbox.put(item(log, f"m{k}"))
    assert len(inbox) == 3 and inbox.dropped == 2
    assert run_all(inbox, log) == ["m2", "m3", "m4"]
    assert run_all(inbox, log) == [] and len(inbox) == 0


def test_a_flood_spreads_over_frames_and_coalesced_items_keep_only_the_latest():
    log: list[str] = []
    inbox = ThreadSafeInbox(max_per_frame=2)
    for k in range(5):
        inbox.put(item(log, f"m{k}"))
    for k in range(3):
        inbox.put(item(log, f"laser{k}"), coalesce_key="laser:p1")
    assert run_all(inbox, log) == ["m0", "m1", "laser2"]
    assert run_all(inbox, log) == ["m2", "m3"]
    assert run_all(inbox, log) == ["m4"]
    assert inbox.dropped == 0


def test_tick_adds_its_item_after_the_messages_only_when_it_has_one():
    log: list[str] = []
    busy = [True]
    inbox = ThreadSafeInbox(tick=lambda: item(log, "tick") if busy[0] else None)
    inbox.put(item(log, "m0"))
    assert run_all(inbox, log) == ["m0", "tick"]
    busy[0] = False
    assert run_all(inbox, log) == []
