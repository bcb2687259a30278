"""The resident's side of ``mentor serve --sfu janus``: publish the mirror once to the
session's Janus VideoRoom, and talk to the viewers over the server's WebSocket.

The server's ``welcome`` carries a publisher join (:class:`~remote.schema.SfuJoin`):
:class:`SfuPublisher` joins the room as the feed id the server chose and sends one
:class:`~remote.publisher.MirrorVideoTrack` of the shared source (one encode, whatever
the number of viewers; Janus's picture-loss reports ask that encoder for a key frame).
If Janus or the link goes away it publishes again, with a growing pause.

Viewers then have no data channel to the trainee. Each expert or observer the server
announces becomes an :class:`SfuViewer`: what the trainee sends it (acks, marks, notes,
status) goes to the server as ``mentor`` with ``to``; what it sends (``mentor`` relayed
with the authenticated sender) passes the same console gate and role check as a data
channel message, so an observer's stroke is refused here too, after the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from functools import partial
from typing import Any, Protocol

from pydantic import BaseModel

from remote.annotate import Sender
from remote.link import VIEWER_ROLES
from remote.publisher import MirrorFrameSource, MirrorVideoTrack
from remote import PROTOCOL_VERSION
from remote.gate import MessageGate
from remote.schema import ANNOTATION_TYPES, MentorRelayed, PeerInfo, SfuJoin
from remote.sfu_janus import JanusClient, JanusError, publish

log = logging.getLogger("remote.trainee_sfu")
REPUBLISH_MAX_S = 5.0


class SfuOwner(Protocol):
    """What the SFU side may ask of the bridge (network thread only)."""

    async def send_server(self, msg: dict[str, Any]) -> None:
        """Send one message to the mentor server over the WebSocket."""

    def sync(self, link: Any) -> None:
        """Send a (re)joined viewer the current notes, marks and status."""

    def mentor_message(self, sender: Sender, msg: BaseModel) -> None:
        """Apply an annotation or command from an expert (role already checked)."""


class SfuViewer:
    """An expert or observer who watches through Janus, as the trainee sees it."""

    def __init__(self, info: PeerInfo, owner: SfuOwner, rates: dict[str, tuple[float, float]] | None) -> None:
        self.peer_id, self.role = info.peer_id, info.role
        self.sender = Sender(info.peer_id, info.name or info.peer_id, info.role)
        self.gate = MessageGate.for_console(rates)
        self.owner = owner
        self.sent = 0

    @property
    def can_annotate(self) -> bool:
        return self.role == "expert"

    def send(self, msg: dict[str, Any] | BaseModel) -> bool:
        """Queue ``msg`` for this viewer through the server (network thread)."""
        data = msg.model_dump(mode="json", by_alias=True, exclude_none=True) if isinstance(msg, BaseModel) else msg
        self.sent += 1
        asyncio.ensure_future(self.owner.send_server(
            {"type": "mentor", "to": self.peer_id, "data": {"v": PROTOCOL_VERSION, **data}}))
        return True


class SfuPublisher:
    """Publishes ``source`` once to the Janus room of the server's welcome."""

    def __init__(self, source: MirrorFrameSource, owner: SfuOwner,
                 rates: dict[str, tuple[float, float]] | None = None) -> None:
        self.source, self.owner, self.rates = source, owner, rates
        self.viewers: dict[str, SfuViewer] = {}
        self.join: SfuJoin | None = None
        self.feed: int | None = None
        self.publish_s: float | None = None  # welcome -> Janus's webrtcup, the last time
        self.error: str | None = None
        self.counters: Counter = Counter()
        self._ice: tuple[list[dict[str, Any]], str] = ([], "all")
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.join is not None

    @property
    def has_expert(self) -> bool:
        return any(v.can_annotate for v in self.viewers.values())

    def start(self, join: SfuJoin, ice_servers: list[dict[str, Any]], policy: str) -> None:
        """From a welcome (network thread): publish, unless already publishing this join."""
        if join.ptype != "publisher":
            self.error = "the server handed this trainee a subscriber join"
            return
        self._ice = (ice_servers, policy)
        if self._task is not None and not self._task.done() and join == self.join:
            return
        if self._task is not None:
            self._task.cancel()
        self.join = join
        self._task = asyncio.ensure_future(self._run(join))

    async def _run(self, join: SfuJoin) -> None:
        pause_s = 0.5
        while True:
            t0 = time.monotonic()
            try:
                async with JanusClient(join.url, join.api_secret) as janus:
                    track = MirrorVideoTrack(self.source)
                    try:
                        pc, self.feed = await publish(
                            janus, join.room, join.pin, track, display="resident", ice_servers=self._ice[0],
                            policy=self._ice[1], feed=join.feed, token=join.token,
                            on_keyframe=partial(self.source.request_keyframe, track.view_id))
                        self.publish_s, self.error = round(time.monotonic() - t0, 3), None
                        self.counters["published"] += 1
                        log.info("published to Janus room %s as feed %s in %.2f s", join.room, self.feed,
                                 self.publish_s)
                        pause_s = 0.5
                        try:
                            while pc.connectionState not in ("failed", "closed") and not janus.closed:
                                await asyncio.sleep(0.5)
                        finally:
                            await pc.close()
                    finally:
                        track.stop()
            except JanusError as e:
                self.error = str(e)
                self.counters["publish_errors"] += 1
                log.warning("Janus: %s; publishing again in %.1f s", e, pause_s)
            self.feed = None
            await asyncio.sleep(pause_s)
            pause_s = min(REPUBLISH_MAX_S, pause_s * 2)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:  # noqa: BLE001 - cancelled, or the error it was ending with
                pass

    # ---- viewers, over the server's WebSocket -----------------------------------------
    def add_viewer(self, info: PeerInfo) -> SfuViewer | None:
        if info.role not in VIEWER_ROLES:
            return None
        viewer = self.viewers[info.peer_id] = SfuViewer(info, self.owner, self.rates)
        self.counters["viewers_joined"] += 1
        self.owner.sync(viewer)
        return viewer

    def remove_viewer(self, peer_id: str) -> bool:
        return self.viewers.pop(peer_id, None) is not None

    def on_mentor(self, msg: MentorRelayed) -> None:
        """A console message the server relayed, its sender authenticated there."""
        viewer = self.viewers.get(msg.sender)
        if viewer is None:
            self.counters["mentor_unknown_sender"] += 1
            return
        m: Any = viewer.gate.admit(json.dumps(msg.data))
        if m is None:
            self.counters["mentor_dropped"] += 1
            return
        if m.type == "sync":
            self.owner.sync(viewer)
        elif m.type in ANNOTATION_TYPES:
            if not viewer.can_annotate:
                self.counters["refused_role"] += 1
                viewer.send({"type": "ack", "ref": getattr(m, "id", m.type), "ok": False,
                             "reason": "observers can watch but not annotate"})
                return
            self.counters["mentor_applied"] += 1
            self.owner.mentor_message(viewer.sender, m)
        else:
            self.counters["mentor_ignored"] += 1
