"""aiortc peers of a Janus VideoRoom in their own process (the fan-out test runs them
inside a network namespace with `ip netns exec`). Prints one JSON line per event and a
status line every STATUS_S; runs until its stdin closes or --seconds pass.

    python janus_peer_process.py publish STACK_JSON
    python janus_peer_process.py subscribe STACK_JSON FEED --count N [--relay]
    python janus_peer_process.py probe STACK_JSON     (what Janus refuses without the secrets)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from remote.sfu_janus import (FrameIdVideoTrack, FrameIdWatcher, JanusClient, JanusError, publish,
                              selected_candidate_types, subscribe)
from remote.stack import StackInfo

STATUS_S = 0.5
KEEPALIVE_S = 1.0  # far below Janus's 20 s default, so a run this short exercises keepalives


def say(**msg: Any) -> None:
    print(json.dumps(msg), flush=True)


async def stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def run_until_done(seconds: float, status: Any) -> None:
    closed = asyncio.ensure_future(stdin_closed())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not closed.done():
        status()
        await asyncio.sleep(STATUS_S)


async def do_publish(info: StackInfo, seconds: float) -> None:
    t0 = time.monotonic()
    track = FrameIdVideoTrack((320, 240), fps=15.0)
    async with JanusClient(info.janus_ws, info.api_secret) as janus:
        pc, feed = await publish(janus, info.room, info.pin, track)
        say(event="published", feed=feed, setup_s=round(time.monotonic() - t0, 3))
        try:
            await run_until_done(seconds, lambda: say(event="status", sent=track.frame_id))
        finally:
            await pc.close()


async def do_subscribe(info: StackInfo, feed: int, count: int, relay: bool, seconds: float) -> None:
    t0 = time.monotonic()
    servers = [info.turn_server(f"sub{k}") for k in range(count)] if relay else [None] * count
    policy = "relay" if relay else "all"
    clients = [JanusClient(info.janus_ws, info.api_secret, KEEPALIVE_S) for _ in range(count)]
    async with contextlib.AsyncExitStack() as stack:
        for c in clients:
            await stack.enter_async_context(c)
        got = await asyncio.gather(*(subscribe(c, info.room, info.pin, feed, policy=policy,
                                               ice_servers=[s] if s else None) for c, s in zip(clients, servers)))
        watchers = [FrameIdWatcher(track) for _, track in got]
        say(event="subscribed", count=count, relay=relay, setup_s=round(time.monotonic() - t0, 3))

        def status() -> None:
            say(event="status", frames=[w.frames for w in watchers], last_ids=[w.last_id for w in watchers],
                distinct=[len(w.ids_seen) for w in watchers], ended=[w.ended for w in watchers],
                pairs=[selected_candidate_types(pc) for pc, _ in got],
                keepalives=[c.keepalives_acked for c in clients], keepalive_errors=[c.keepalive_error for c in clients])

        try:
            await run_until_done(seconds, status)
        finally:
            for w in watchers:
                await w.stop()
            for pc, _ in got:
                await pc.close()


async def refused(coro: Any) -> str:
    """The error Janus answers, or "accepted"."""
    try:
        await coro
    except JanusError as e:
        return str(e)
    return "accepted"


async def do_probe(info: StackInfo) -> None:
    no_secret = await refused(JanusClient(info.janus_ws, None).__aenter__())
    async with JanusClient(info.janus_ws, info.api_secret) as janus:
        handle = await janus.attach()
        wrong_pin = await refused(handle.message({"request": "join", "ptype": "subscriber", "room": info.room,
                                                  "pin": "wrong", "streams": [{"feed": 1}]}))
        create = await refused(handle.message({"request": "create", "room": info.room + 1, "publishers": 1}))
        destroy = await refused(handle.message({"request": "destroy", "room": info.room, "secret": "wrong"}))
        rooms, _ = await handle.message({"request": "list"})
    say(event="probe", no_secret=no_secret, wrong_pin=wrong_pin, create=create, destroy=destroy,
        listed=[r.get("room") for r in rooms.get("list", [])])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("publish", "subscribe", "probe"))
    ap.add_argument("stack_json")
    ap.add_argument("feed", nargs="?", type=int, default=0)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--relay", action="store_true")
    ap.add_argument("--seconds", type=float, default=90.0)
    a = ap.parse_args()
    info = StackInfo(**json.loads(Path(a.stack_json).read_text()))
    try:
        if a.mode == "probe":
            asyncio.run(do_probe(info))
        elif a.mode == "publish":
            asyncio.run(do_publish(info, a.seconds))
        else:
            asyncio.run(do_subscribe(info, a.feed, a.count, a.relay, a.seconds))
    except Exception as e:  # noqa: BLE001 - reported to the test as a line, with its type
        say(event="error", error=f"{type(e).__name__}: {e}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
