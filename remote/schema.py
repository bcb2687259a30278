"""The versioned message schema: data-channel messages (console <-> trainee) and
signalling messages (browser/trainee <-> server) and their size limits.

Every message is a JSON object with ``v`` (protocol version, :data:`PROTOCOL_VERSION`)
and ``type``. Unknown fields are refused (``extra="forbid"``), numbers must be finite
and in range, strings are bounded. :class:`remote.gate.MessageGate` applies, in order: size limit,
rate limit (token buckets), parse + validate; anything refused is dropped and counted
in its ``counters`` - it never raises.

Video coordinates (``point``, ``points``) are normalised to the mirror picture (both
eyes as the resident's mirror holds them): (0, 0) top-left, (1, 1) bottom-right. A
viewer watching one eye maps its points through the view's ``rect`` (``view``
message). ``frame_id`` is the id carried in the strip above the picture the mark was
drawn on (:mod:`remote.framecode`). ``view`` (console -> trainee) picks what to watch.

Trainee -> console (same envelope, produced only by the trainee): ``hello`` (peer id,
role, can_annotate, frame-code layout, the ``views`` on offer and the current
``view``), ``view`` (:class:`ViewShown`), ``hb``/``hb_ack``, ``ack`` (``ref`` = the mark
id or command, ``ok``, ``reason``), ``marks`` (the current marks: id, kind, author),
``notes``, ``bye``, and ``status`` (:class:`StatusMsg`, a pydantic model: the scenario's
current step n/N with its prompt, the latest hint, the run's result once scored, and the
notices since the last one, or on ``sync`` the latest few with ``replay`` true).

Server -> trainee and viewers (signalling; built by the server from these models and
validated by the trainee with :data:`SERVER_ADAPTER`): ``welcome``, ``peer-joined``,
``peer-left``, ``signal`` (relayed, the authenticated sender in ``from``), ``error``,
``pong``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from remote import PROTOCOL_VERSION

MAX_DATA_MESSAGE_BYTES = 32 * 1024
MAX_SIGNAL_MESSAGE_BYTES = 96 * 1024
MAX_STROKE_POINTS = 1000
MAX_NOTE_CHARS = 1000
MAX_LABEL_CHARS = 200
MAX_STATUS_TEXT_CHARS = 400  # longer scenario texts are cut (with an ellipsis) before they are sent
MAX_STATUS_ID_CHARS = 64
MAX_STATUS_NOTICES = 6  # notices in one status message, and kept for a viewer who joins later
MAX_STEPS = 10_000

Version = Annotated[int, Field(strict=True, ge=PROTOCOL_VERSION, le=PROTOCOL_VERSION)]
MarkId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
FrameId = Annotated[int, Field(strict=True, ge=0, lt=1 << 24)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Point = tuple[Unit, Unit]
ColorRGBA = tuple[Unit, Unit, Unit, Unit]
Seq = Annotated[int, Field(strict=True, ge=0, lt=1 << 53)]
TimeMs = Annotated[float, Field(ge=0.0, le=1e15, allow_inf_nan=False)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    v: Version


M = TypeVar("M", bound=_Msg)


def make(cls: type[M], **fields: Any) -> M:
    """Build (and validate) a message of this protocol version, its ``type`` filled in:
    ``make(PeerLeft, peer_id=...)``."""
    tag = get_args(cls.model_fields["type"].annotation)[0]
    return cls.model_validate({"v": PROTOCOL_VERSION, "type": tag, **fields})


# ---- data channel: both directions -------------------------------------------------
class Heartbeat(_Msg):
    type: Literal["hb"]
    seq: Seq
    t_ms: TimeMs


class HeartbeatAck(_Msg):
    type: Literal["hb_ack"]
    seq: Seq
    t_ms: TimeMs


class Bye(_Msg):
    type: Literal["bye"]


# ---- data channel: console -> trainee ----------------------------------------------
class Hold(_Msg):
    """Keep this video frame's depth and matrices (freeze-frame, or a stroke being drawn)."""

    type: Literal["hold"]
    frame_id: FrameId


class Release(_Msg):
    type: Literal["release"]
    frame_id: FrameId


class StrokeMsg(_Msg):
    type: Literal["stroke"]
    id: MarkId
    frame_id: FrameId
    points: Annotated[list[Point], Field(min_length=2, max_length=MAX_STROKE_POINTS)]
    color: ColorRGBA = (0.1, 1.0, 0.2, 1.0)
    width_px: Annotated[float, Field(ge=1.0, le=32.0)] = 4.0
    t_ms: TimeMs | None = None


class PinMsg(_Msg):
    type: Literal["pin"]
    id: MarkId
    frame_id: FrameId
    point: Point
    color: ColorRGBA = (1.0, 0.85, 0.1, 1.0)
    label: Annotated[str, Field(max_length=MAX_LABEL_CHARS)] = ""
    t_ms: TimeMs | None = None


class LaserMsg(_Msg):
    """The laser pointer: a transient marker; ``point`` None turns it off."""

    type: Literal["laser"]
    frame_id: FrameId
    point: Point | None


class UndoMsg(_Msg):
    type: Literal["undo"]


class ClearMsg(_Msg):
    type: Literal["clear"]


class NoteMsg(_Msg):
    type: Literal["note"]
    id: MarkId
    text: Annotated[str, Field(min_length=1, max_length=MAX_NOTE_CHARS)]


class SyncMsg(_Msg):
    """Ask for the current marks and notes (sent on join and after a reload)."""

    type: Literal["sync"]


ViewId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class ViewMsg(_Msg):
    """Watch another of the views the trainee offers (``hello.views``); any role may."""

    type: Literal["view"]
    view: ViewId


ConsoleMessage = Annotated[Heartbeat | HeartbeatAck | Bye | Hold | Release | StrokeMsg | PinMsg | LaserMsg | UndoMsg
                           | ClearMsg | NoteMsg | SyncMsg | ViewMsg, Field(discriminator="type")]
CONSOLE_ADAPTER: TypeAdapter = TypeAdapter(ConsoleMessage)
ANNOTATION_TYPES = frozenset({"hold", "release", "stroke", "pin", "laser", "undo", "clear", "note"})

# ---- data channel: trainee -> viewers ----------------------------------------------
NoticeKind = Literal["step_started", "step_completed", "step_failed", "hint", "prompt", "haptic", "sound",
                     "overlay", "critical_error", "event", "run_finished"]
StatusText = Annotated[str, Field(max_length=MAX_STATUS_TEXT_CHARS)]
StatusId = Annotated[str, Field(max_length=MAX_STATUS_ID_CHARS)]
StepIndex = Annotated[int, Field(strict=True, ge=0, le=MAX_STEPS)]
Score = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


class StatusNotice(BaseModel):
    """One scenario notice as a viewer gets it (see :class:`vr_trainer.app.bridge.NoticeSink`)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    kind: NoticeKind
    time_s: Annotated[float, Field(ge=-1e9, le=1e9)]
    text_en: StatusText | None = None
    text_zh: StatusText | None = None
    step_id: StatusId | None = None
    event_id: StatusId | None = None
    critical_error: StatusId | None = None
    step_index: StepIndex | None = None
    step_count: StepIndex | None = None
    score: Score | None = None
    passed: bool | None = None
    pass_mark: Score | None = None


class RunOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    score: Score
    passed: bool
    pass_mark: Score | None = None


class StatusMsg(_Msg):
    """Where the resident is in the scenario, and what the scenario just said.

    ``step_index`` is 0-based (== ``step_count`` once every step ended; None before the
    first step); ``prompt_*`` the current step's prompt; ``hint_*`` its latest hint;
    ``notices`` those since the previous status (``replay`` false) or, sent to a viewer
    who just joined, the latest few (``replay`` true); ``dropped`` counts notices the
    trainee dropped under load."""

    type: Literal["status"]
    step_index: StepIndex | None = None
    step_count: StepIndex = 0
    step_id: StatusId | None = None
    prompt_en: StatusText | None = None
    prompt_zh: StatusText | None = None
    hint_en: StatusText | None = None
    hint_zh: StatusText | None = None
    result: RunOutcome | None = None
    notices: Annotated[list[StatusNotice], Field(max_length=MAX_STATUS_NOTICES)] = []
    replay: bool = False
    dropped: Annotated[int, Field(strict=True, ge=0)] = 0


class ViewShown(_Msg):
    """The view this viewer's video shows from now on. ``rect``: where its picture lies in
    the mirror picture (x, y, width, height as fractions), which is what stroke, pin and
    laser points are normalised to; None for a view that is not part of the mirror (not
    drawn on). ``strip_px``: the frame-id rows above the picture (hidden by the console)."""

    type: Literal["view"]
    view: ViewId
    rect: tuple[Unit, Unit, Unit, Unit] | None = None  # absent: not part of the mirror
    can_annotate: bool
    strip_px: Annotated[int, Field(strict=True, ge=0, le=64)]


TraineeMessage = Annotated[StatusMsg | ViewShown, Field(discriminator="type")]
TRAINEE_ADAPTER: TypeAdapter = TypeAdapter(TraineeMessage)

# ---- signalling over the server's WebSocket ----------------------------------------
PeerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class Join(_Msg):
    type: Literal["join"]
    token: Annotated[str, Field(min_length=1, max_length=2048)]


class SdpPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    kind: Literal["offer", "answer"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SIGNAL_MESSAGE_BYTES - 1024)]


class CandidatePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    kind: Literal["candidate"]
    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: Annotated[str, Field(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=64)] | None = None


class EndOfCandidates(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    kind: Literal["end-of-candidates"]


class Signal(_Msg):
    type: Literal["signal"]
    to: PeerId | None = None  # viewers may only signal the trainee; the server fills in "from"
    data: Annotated[SdpPayload | CandidatePayload | EndOfCandidates, Field(discriminator="kind")]


class Ping(_Msg):
    type: Literal["ping"]


class Leave(_Msg):
    type: Literal["leave"]


class MentorSend(_Msg):
    """A console message (stroke, pin, note...) sent through the server instead of a data
    channel (SFU mode): a viewer's goes to the trainee if its token's role may annotate;
    the trainee's (acks, marks, notes, status) goes to viewer ``to``."""

    type: Literal["mentor"]
    to: PeerId | None = None
    data: dict[str, Any]


SignalMessage = Annotated[Join | Signal | Ping | Leave | MentorSend, Field(discriminator="type")]
SIGNAL_ADAPTER: TypeAdapter = TypeAdapter(SignalMessage)

# ---- signalling: server -> trainee and viewers -------------------------------------
# Built by the server (so what it sends is what the schema says) and validated by the
# trainee; the browser console reads the same JSON.
Role = Literal["trainee", "expert", "observer"]
ShortText = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]


class PeerInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    peer_id: PeerId
    role: Role
    name: ShortText


class IceServer(BaseModel):
    """One STUN/TURN server, as a browser's ``RTCIceServer``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    urls: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=16)]
    username: Annotated[str, Field(max_length=1024)] | None = None
    credential: Annotated[str, Field(max_length=1024)] | None = None


class SfuJoin(BaseModel):
    """How to reach the session's own Janus VideoRoom: only in a ``welcome``, so only after
    the token was checked; never the room's secret or admin key. ``feed`` is the publisher
    id the server chose for the session's trainee (``ptype`` publisher) or to subscribe to;
    ``token`` (the trainee's only) is the room's one ``allowed`` publish token."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    kind: Literal["janus"]
    url: Annotated[str, Field(max_length=1024)]
    api_secret: Annotated[str, Field(max_length=256)]
    room: Annotated[int, Field(ge=1)]
    pin: Annotated[str, Field(max_length=256)]
    feed: Annotated[int, Field(ge=1)]
    ptype: Literal["publisher", "subscriber"]
    token: Annotated[str, Field(max_length=256)] | None = None


class Welcome(_Msg):
    """The answer to ``join``: who you are in which session, how to reach the others."""

    type: Literal["welcome"]
    peer_id: PeerId
    role: Role
    name: ShortText
    session_id: Annotated[str, Field(max_length=MAX_LABEL_CHARS)]
    expires_s: Annotated[int, Field(ge=0)]
    can_annotate: bool
    ice_servers: Annotated[list[IceServer], Field(max_length=16)]
    ice_transport_policy: Literal["all", "relay"]
    peers: Annotated[list[PeerInfo], Field(max_length=64)]
    sfu: SfuJoin | None = None  # set when the server runs with --sfu janus


class PeerJoined(_Msg):
    type: Literal["peer-joined"]
    peer: PeerInfo


class PeerLeft(_Msg):
    type: Literal["peer-left"]
    peer_id: PeerId


class Relayed(_Msg):
    """A :class:`Signal` passed on, with the authenticated sender in ``from``."""

    model_config = ConfigDict(populate_by_name=True)
    type: Literal["signal"]
    sender: PeerId = Field(alias="from")
    data: Annotated[SdpPayload | CandidatePayload | EndOfCandidates, Field(discriminator="kind")]


class MentorRelayed(_Msg):
    """A :class:`MentorSend` passed on, with the authenticated sender in ``from``."""

    model_config = ConfigDict(populate_by_name=True)
    type: Literal["mentor"]
    sender: PeerId = Field(alias="from")
    data: dict[str, Any]


class ServerError(_Msg):
    """A refusal: ``code`` is unauthorized | replaced | full | no_peer | join_timeout | bad_request."""

    type: Literal["error"]
    code: Annotated[str, Field(max_length=64)]
    message: Annotated[str, Field(max_length=MAX_NOTE_CHARS)]


class Pong(_Msg):
    type: Literal["pong"]


ServerMessage = Annotated[Welcome | PeerJoined | PeerLeft | Relayed | MentorRelayed | ServerError | Pong,
                          Field(discriminator="type")]
SERVER_ADAPTER: TypeAdapter = TypeAdapter(ServerMessage)


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of both message families (for docs and other clients)."""
    return {"version": PROTOCOL_VERSION, "console": CONSOLE_ADAPTER.json_schema(),
            "signal": SIGNAL_ADAPTER.json_schema(), "server": SERVER_ADAPTER.json_schema(by_alias=True),
            "trainee": TRAINEE_ADAPTER.json_schema()}


def encode(msg: dict[str, Any] | BaseModel) -> str:
    """Serialise an outgoing message (adds ``v`` to a dict; a model carries its own)."""
    if isinstance(msg, BaseModel):
        msg = msg.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps({"v": PROTOCOL_VERSION, **msg}, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
