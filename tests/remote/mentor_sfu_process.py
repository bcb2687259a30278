"""Clients of `mentor serve --sfu janus` in their own process (the test runs them inside a
network namespace). One JSON line per event, a status line every STATUS_S; runs until
stdin closes or --seconds pass.

    python mentor_sfu_process.py resident URL TOKEN     (TraineeBridge on a synthetic loop)
    python mentor_sfu_process.py viewer URL TOKEN [--stroke]   (join, subscribe via Janus)
    python mentor_sfu_process.py knock URL TOKEN...     (what the server answers each)
    python mentor_sfu_process.py intruder URL TOKEN --other-room R --other-feed F
        (a viewer who tries to publish into its own room and to join room R)
    python mentor_sfu_process.py probe JANUS_WS API_SECRET ROOM... [--admin-key K]
        (does each room exist? with the admin key: the rooms Janus lists)

``VR_TRAINER_MENTOR_CA`` names the server's self-signed certificate, as for the resident.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402 - after the path set-up
from janus_peer_process import run_until_done, say  # noqa: E402

from remote.harness import SyntheticFrameThread  # noqa: E402
from remote.schema import SfuJoin  # noqa: E402
from remote.sfu_janus import (  # noqa: E402
    FrameIdVideoTrack,
    FrameIdWatcher,
    JanusClient,
    JanusError,
    publish,
    subscribe,
)
from vr_trainer.frame import MirrorFrame, MirrorViewInfo  # noqa: E402
from vr_trainer.sim.transforms import look_at_pose, projection_from_fov, rigid_inverse  # noqa: E402

SIZE = (320, 240)


class DepthFrameThread(SyntheticFrameThread):
    """Synthetic frames with a flat depth and one eye's matrices, so a stroke drawn on them
    lands on something (the plain synthetic frames refuse every mark)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        w, h = self.size
        pose = look_at_pose(np.array([0.0, 0.0, 600.0]), np.zeros(3))
        self._view = MirrorViewInfo((0, 0, w, h), rigid_inverse(pose), projection_from_fov(-0.6, 0.6, 0.5, -0.5,
                                                                                           30.0, 20000.0))
        self._depth = np.full((h, w), 0.9, np.float32)

    def recent_frames(self) -> Iterator[MirrorFrame]:
        for f in super().recent_frames():  # what the loop keeps of a frame: depth and matrices
            yield MirrorFrame(f.frame_id, f.time_s, None, self._depth, [self._view])


async def do_resident(url: str, token: str, seconds: float) -> None:
    from remote.peer import IceOptions
    from remote.trainee import BridgeConfig, TraineeBridge

    host = DepthFrameThread(size=SIZE, fps=15.0).start()
    t0 = time.monotonic()
    bridge = TraineeBridge(url, token, BridgeConfig(audio="none", ice=IceOptions(), connect_wait_s=10.0))
    try:
        await asyncio.to_thread(bridge.attach, host)
        say(event="attached", session=bridge.session_id, attach_s=round(time.monotonic() - t0, 3))

        def status() -> None:
            st = bridge.stats()
            ann = host.annotations
            say(event="status", feed=st["sfu_feed"], publish_s=st["sfu_publish_s"], sfu_error=st["sfu_error"],
                links=st["links"], encoded=bridge.source.encoded_frames, frame=host.next_frame_index,
                strokes=[{"id": s.stroke_id, "author": s.author, "points": len(s.points_mm)} for s in ann.strokes],
                sfu={k[4:]: v for k, v in st.items() if k.startswith("sfu_") and isinstance(v, int)},
                applied={k: v for k, v in st.items() if k.startswith("applied_")})

        await run_until_done(seconds, status)
    finally:
        await asyncio.to_thread(bridge.close)
        host.stop()


def ssl_context() -> Any:
    ca = os.environ.get("VR_TRAINER_MENTOR_CA")
    return ssl.create_default_context(cafile=ca) if ca else True


def ws_url(url: str) -> str:
    return url.replace("https://", "wss://").replace("http://", "ws://").rstrip("/") + "/ws"


async def do_viewer(url: str, token: str, stroke: bool, seconds: float) -> None:
    t0 = time.monotonic()
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(url), ssl=ssl_context()) as ws:
        await ws.send_json({"v": 1, "type": "join", "token": token})
        welcome = await ws.receive_json(timeout=10)
        if welcome.get("type") != "welcome" or not welcome.get("sfu"):
            raise RuntimeError(f"no SFU welcome: {welcome}")
        join = SfuJoin.model_validate(welcome["sfu"])
        say(event="welcome", role=welcome["role"], can_annotate=welcome["can_annotate"], ptype=join.ptype,
            room=join.room, feed=join.feed, welcome_keys=sorted(welcome["sfu"]), join_s=round(time.monotonic() - t0, 3),
            ice_urls=[s["urls"] for s in welcome["ice_servers"]])

        async def read() -> None:
            async for raw in ws:
                if raw.type == aiohttp.WSMsgType.TEXT:
                    received.append(json.loads(raw.data))

        reader = asyncio.create_task(read())
        async with JanusClient(join.url, join.api_secret, keepalive_s=1.0) as janus:
            for attempt in range(60):  # the resident may not have published yet
                try:
                    pc, track = await subscribe(janus, join.room, join.pin, join.feed,
                                                ice_servers=welcome["ice_servers"])
                    break
                except JanusError as e:
                    if attempt == 59 or "No such feed" not in str(e):
                        raise
                    await asyncio.sleep(0.25)
            watcher = FrameIdWatcher(track)
            say(event="subscribed", subscribe_s=round(time.monotonic() - t0, 3))
            sent: list[int] = []

            def status() -> None:
                if stroke and not sent and watcher.frames >= 20 and watcher.last_id is not None:
                    sent.append(watcher.last_id)
                    asyncio.ensure_future(ws.send_json({"v": 1, "type": "mentor", "data": {
                        "v": 1, "type": "stroke", "id": "s1", "frame_id": watcher.last_id,
                        "points": [[0.3, 0.5], [0.5, 0.4], [0.7, 0.5]]}}))
                say(event="status", frames=watcher.frames, last_id=watcher.last_id, distinct=len(watcher.ids_seen),
                    stroke_frame=sent[0] if sent else None, received=received[-20:],
                    keepalives=janus.keepalives_acked)

            try:
                await run_until_done(seconds, status)
            finally:
                await watcher.stop()
                await pc.close()
                reader.cancel()


async def knock(url: str, first: str) -> dict[str, Any]:
    """Send ``first`` as the first message; everything the server answers, and how it closed."""
    got: list[str] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(url), ssl=ssl_context()) as ws:
        await ws.send_str(first)
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(8):
                async for raw in ws:
                    if raw.type == aiohttp.WSMsgType.TEXT:
                        got.append(raw.data)
        return {"answers": got, "close_code": ws.close_code}


async def do_knock(url: str, tokens: list[str]) -> None:
    firsts = [json.dumps({"v": 1, "type": "join", "token": t}) for t in tokens]
    firsts.append(json.dumps({"v": 1, "type": "ping"}))  # no join at all
    results = await asyncio.gather(*(knock(url, f) for f in firsts))
    say(event="knocked", results=results)


async def attempt(what: str, coro: Any) -> dict[str, Any]:
    """Run one thing Janus should refuse; what it answered."""
    t0 = time.monotonic()
    try:
        got = await asyncio.wait_for(coro, 10)
        with contextlib.suppress(Exception):
            await got[0].close()
        return {"what": what, "refused": False, "s": round(time.monotonic() - t0, 3)}
    except (JanusError, asyncio.TimeoutError) as e:
        return {"what": what, "refused": True, "error": f"{type(e).__name__}: {e}"}


async def do_intruder(url: str, token: str, other_room: int, other_feed: int, seconds: float) -> None:
    """A viewer with a valid token: publish as its session's feed (no token, a made-up one),
    subscribe to another session's room with its own pin; list the rooms it can see."""
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(url), ssl=ssl_context()) as ws:
        await ws.send_json({"v": 1, "type": "join", "token": token})
        welcome = await ws.receive_json(timeout=10)
        join = SfuJoin.model_validate(welcome["sfu"])
        say(event="welcome", room=join.room, feed=join.feed, ptype=join.ptype, has_token=join.token is not None,
            join_s=round(time.monotonic() - t0, 3))
        results = []
        async with JanusClient(join.url, join.api_secret) as janus:
            for what, tok in (("publish as the feed", None), ("publish with a made-up token", "guess"),
                              ("publish under another id", None)):
                track = FrameIdVideoTrack((320, 240))
                feed = None if what.endswith("another id") else join.feed
                results.append(await attempt(what, publish(janus, join.room, join.pin, track, feed=feed, token=tok,
                                                           ice_servers=welcome["ice_servers"])))
                track.stop()
            results.append(await attempt("subscribe in the other room", subscribe(
                janus, other_room, join.pin, other_feed, ice_servers=welcome["ice_servers"])))
            handle = await janus.attach()
            listed, _ = await handle.message({"request": "list"})
            say(event="tried", results=results, listed=[r["room"] for r in listed.get("list", [])])
            await run_until_done(seconds, lambda: None)


async def do_probe(janus_ws: str, api_secret: str, rooms: list[int], admin_key: str | None) -> None:
    """Whether each room exists; with the admin key also every room Janus lists (private ones too)."""
    async with JanusClient(janus_ws, api_secret) as janus:
        handle = await janus.attach()
        out = {}
        for r in rooms:
            data, _ = await handle.message({"request": "exists", "room": r})
            out[str(r)] = bool(data.get("exists"))
        listed = None
        if admin_key:
            data, _ = await handle.message({"request": "list", "admin_key": admin_key})
            listed = [r["room"] for r in data.get("list", [])]
        say(event="probed", exists=out, listed=listed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("resident", "viewer", "knock", "intruder", "probe"))
    ap.add_argument("url")
    ap.add_argument("tokens", nargs="+")
    ap.add_argument("--stroke", action="store_true")
    ap.add_argument("--other-room", type=int, default=1)
    ap.add_argument("--other-feed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--admin-key", default=None)
    a = ap.parse_args()
    try:
        if a.mode == "resident":
            asyncio.run(do_resident(a.url, a.tokens[0], a.seconds))
        elif a.mode == "viewer":
            asyncio.run(do_viewer(a.url, a.tokens[0], a.stroke, a.seconds))
        elif a.mode == "intruder":
            asyncio.run(do_intruder(a.url, a.tokens[0], a.other_room, a.other_feed, a.seconds))
        elif a.mode == "probe":
            asyncio.run(do_probe(a.url, a.tokens[0], [int(r) for r in a.tokens[1:]], a.admin_key))
        else:
            asyncio.run(do_knock(a.url, a.tokens))
    except Exception as e:  # noqa: BLE001 - reported to the test as a line, with its type
        say(event="error", error=f"{type(e).__name__}: {e}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
