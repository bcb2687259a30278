"""The two processes of `vr-trainer bench fanout` (run by :mod:`vr_trainer.bench.fanout`,
inside a network namespace): the publishing side and all its subscribers.

    python -m vr_trainer.bench.fanout_peer publish MODE --size WxH --fps F [--stack JSON]
    python -m vr_trainer.bench.fanout_peer subscribe MODE (--url URL | --stack JSON --feed ID)

The publisher is the resident's streaming pipeline without a frame loop: synthetic
pictures (:class:`~remote.harness.SyntheticFrameThread`, which notes each frame's
publish wall time) -> :class:`~remote.publisher.MirrorFrameSource` (the frame id stamped
above the picture) -> one :class:`~remote.publisher.MirrorVideoTrack` per peer
connection. MODE:

* ``direct``: one aiortc peer connection per subscriber, raw frames, aiortc's own VP8
  encoder in each sender (one encode per peer: aiortc out of the box);
* ``direct-shared``: one peer connection per subscriber, the picture encoded once and
  the same VP8 packets sent to every peer (the project's direct mode);
* ``janus``: one peer connection to Janus's VideoRoom (encoded once); subscribers
  subscribe through Janus.

Direct peers are signalled over HTTP on 127.0.0.1 (the publisher offers, as the trainee
does). Both processes read JSON commands on stdin and answer JSON lines on stdout:
``{"cmd": "add", "n": K}`` (subscriber: K more, answered once each shows a frame id),
``{"cmd": "mark"}`` (start noting arrivals), ``{"cmd": "collect"}`` (subscriber: every
(frame id, wall time) decoded since the mark, per subscriber; publisher: each frame id's
publish wall time since the mark).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
from functools import partial
from typing import Any

MODES = ("direct", "direct-shared", "janus")
JANUS_SUBSCRIBE_TRIES = 40


def say(**msg: Any) -> None:
    print(json.dumps(msg), flush=True)


async def commands() -> Any:
    """Yield each JSON command from stdin until it closes."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        with contextlib.suppress(ValueError):
            yield json.loads(line)


# ---- publisher ------------------------------------------------------------------------
async def run_publisher(mode: str, size: tuple[int, int], fps: float, stack: dict[str, Any] | None) -> None:
    from aiohttp import web
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from remote.harness import SyntheticFrameThread
    from remote.peer import IceOptions, configure_ice, prefer_codec
    from remote.publisher import MirrorFrameSource, MirrorVideoTrack, StreamConfig
    from remote.sfu_janus import JanusClient, publish

    configure_ice(IceOptions(loopback_only=mode != "janus"))
    # "H264" here means: no shared encoder, raw frames to each sender, which encodes VP8 itself
    source = MirrorFrameSource(StreamConfig(max_size=size, fps=fps, codec="H264" if mode == "direct" else "VP8",
                                            default_view="both"))
    source.bind(asyncio.get_running_loop())
    frames = SyntheticFrameThread(size=size, fps=fps)
    frames.sinks.append(source)
    frames.start()
    pcs: dict[int, Any] = {}
    ids = itertools.count(1)
    mark_s = [0.0]
    janus = runner = None
    try:
        if mode == "janus":
            assert stack is not None
            janus = JanusClient(stack["janus_ws"], stack["api_secret"])
            await janus.__aenter__()
            track = MirrorVideoTrack(source)
            pc, feed = await publish(janus, int(stack["room"]), stack["pin"], track,
                                     on_keyframe=partial(source.request_keyframe, track.view_id))
            pcs[0] = pc
            say(event="ready", feed=feed)
        else:
            async def offer(request: web.Request) -> web.Response:
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                track = MirrorVideoTrack(source)
                tr = pc.addTransceiver(track, direction="sendonly")
                prefer_codec(tr, "VP8")
                if source.encoded:  # a viewer's picture-loss report asks the shared encoder
                    tr.sender._send_keyframe = partial(source.request_keyframe, track.view_id)  # type: ignore
                await pc.setLocalDescription(await pc.createOffer())
                pid = next(ids)
                pcs[pid] = pc
                return web.json_response({"id": pid, "sdp": pc.localDescription.sdp})

            async def answer(request: web.Request) -> web.Response:
                body = await request.json()
                await pcs[int(body["id"])].setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
                return web.json_response({"ok": True})

            app = web.Application()
            app.router.add_post("/offer", offer)
            app.router.add_post("/answer", answer)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            say(event="ready", url=f"http://127.0.0.1:{runner.addresses[0][1]}")
        async for cmd in commands():
            if cmd.get("cmd") == "mark":
                mark_s[0] = time.time()
                say(event="marked")
            elif cmd.get("cmd") == "collect":
                pub = {str(i): t for i, t in list(frames.publish_wall_s.items()) if t >= mark_s[0] - 2.0}
                say(event="published", published=pub, peers=len(pcs), encoded=source.encoded_frames,
                    converted=source.converted)
    finally:
        frames.stop()
        source.close()
        for pc in pcs.values():
            await pc.close()
        if janus is not None:
            await janus.close()
        if runner is not None:
            await runner.cleanup()


# ---- subscribers ----------------------------------------------------------------------
class ArrivalWatcher:
    """One subscriber's received track: the frame id of each decoded picture and when it
    was decoded (wall time), while ``recording``."""

    def __init__(self, track: Any, pc: Any) -> None:
        self.track, self.pc = track, pc
        self.frames = 0
        self.arrivals: list[tuple[int, float]] = []
        self.recording = False
        self.first = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        import av
        from aiortc.mediastreams import MediaStreamError

        from remote import framecode

        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await self.track.recv()
                now = time.time()
                if not isinstance(frame, av.VideoFrame):
                    continue
                fid = framecode.read_luma(frame.to_ndarray(format="gray"))
                if fid is None:
                    continue
                self.frames += 1
                if not self.first.done():
                    self.first.set_result(fid)
                if self.recording:
                    self.arrivals.append((fid, now))

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self.pc.close()


async def _direct_subscriber(http: Any, url: str) -> ArrivalWatcher:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    async with http.post(f"{url}/offer") as r:
        offer = await r.json()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def _on_track(track: Any) -> None:
        if not got.done():
            got.set_result(track)

    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    async with http.post(f"{url}/answer", json={"id": offer["id"], "sdp": pc.localDescription.sdp}) as r:
        await r.json()
    return ArrivalWatcher(await asyncio.wait_for(got, 15), pc)


async def _janus_subscriber(janus: Any, stack: dict[str, Any], feed: int) -> ArrivalWatcher:
    from remote.sfu_janus import JanusError, subscribe

    for attempt in range(JANUS_SUBSCRIBE_TRIES):
        try:
            pc, track = await subscribe(janus, int(stack["room"]), stack["pin"], feed)
            return ArrivalWatcher(track, pc)
        except JanusError as e:
            if attempt == JANUS_SUBSCRIBE_TRIES - 1 or "No such feed" not in str(e):
                raise
            await asyncio.sleep(0.25)
    raise AssertionError("unreachable")


async def run_subscribers(mode: str, url: str | None, stack: dict[str, Any] | None, feed: int | None) -> None:
    import aiohttp

    from remote.peer import IceOptions, configure_ice
    from remote.sfu_janus import JanusClient

    configure_ice(IceOptions(loopback_only=mode != "janus"))
    watchers: list[ArrivalWatcher] = []
    janus = None
    async with aiohttp.ClientSession() as http:
        try:
            if mode == "janus":
                assert stack is not None and feed is not None
                janus = JanusClient(stack["janus_ws"], stack["api_secret"])
                await janus.__aenter__()
            say(event="ready")
            async for cmd in commands():
                if cmd.get("cmd") == "add":
                    t0 = time.monotonic()
                    new = await asyncio.gather(*(
                        _janus_subscriber(janus, stack, feed) if janus is not None and stack is not None
                        and feed is not None else _direct_subscriber(http, str(url))
                        for _ in range(int(cmd["n"]))))
                    watchers.extend(new)
                    await asyncio.wait_for(asyncio.gather(*(w.first for w in new)), 30)
                    say(event="added", total=len(watchers), add_s=round(time.monotonic() - t0, 2))
                elif cmd.get("cmd") == "mark":
                    for w in watchers:
                        w.arrivals.clear()
                        w.recording = True
                    say(event="marked")
                elif cmd.get("cmd") == "collect":
                    for w in watchers:
                        w.recording = False
                    say(event="arrivals", arrivals=[w.arrivals for w in watchers])
        finally:
            for w in watchers:
                await w.close()
            if janus is not None:
                await janus.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m vr_trainer.bench.fanout_peer")
    ap.add_argument("role", choices=("publish", "subscribe"))
    ap.add_argument("mode", choices=MODES)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--stack", default=None, help="the stack's stack.json (janus mode)")
    ap.add_argument("--url", default=None, help="the publisher's signalling URL (direct modes)")
    ap.add_argument("--feed", type=int, default=None)
    a = ap.parse_args(argv)
    stack = json.loads(open(a.stack).read()) if a.stack else None
    try:
        if a.role == "publish":
            w, h = (int(x) for x in a.size.lower().split("x"))
            asyncio.run(run_publisher(a.mode, (w, h), a.fps, stack))
        else:
            asyncio.run(run_subscribers(a.mode, a.url, stack, a.feed))
    except Exception as e:  # noqa: BLE001 - reported to the benchmark as a line, with its type
        say(event="error", error=f"{type(e).__name__}: {e}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
