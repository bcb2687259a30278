"""The resident's bridge settings: :class:`BridgeConfig` and the options that ride on
the ``--mentor`` URL (``?fps=60&size=1280x720&codec=VP8&audio=none&view=eye&loopback=1``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit, urlunsplit

from remote import framecode
from remote.errors import RemoteError
from remote.link import LinkConfig
from remote.peer import IceOptions
from remote.publisher import StreamConfig
from remote.views import BUILTIN_VIEWS, StreamView


@dataclass
class BridgeConfig:
    stream: StreamConfig = field(default_factory=StreamConfig)
    audio: str = "auto"
    ice: IceOptions | None = None  # None: offer 127.0.0.1 too when the server is on loopback
    heartbeat_interval_s: float = 1.0
    dead_after_s: float = 3.0
    connect_timeout_s: float = 20.0
    reconnect_max_s: float = 5.0
    connect_wait_s: float = 3.0
    console_rates: dict[str, tuple[float, float]] | None = None
    max_links: int = 8
    ca_file: str | None = None
    extra_views: list[StreamView] = field(default_factory=list)  # offered beside one eye / both eyes

    def link_config(self) -> LinkConfig:
        return LinkConfig(self.stream.codec, self.stream.fps, self.heartbeat_interval_s, self.dead_after_s,
                          self.connect_timeout_s, self.console_rates)


def parse_mentor_url(url: str) -> tuple[str, str, dict[str, str]]:
    """(http base URL, WebSocket URL, options) from ``--mentor``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"--mentor {url!r}: give the server's address, e.g. http://127.0.0.1:8765")
    opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    ws = urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))
    return base, ws, opts


def config_from_options(opts: dict[str, str], base: BridgeConfig | None = None) -> BridgeConfig:
    cfg = base or BridgeConfig()
    try:
        if "fps" in opts:
            cfg.stream.fps = float(opts["fps"])
            if not 1 <= cfg.stream.fps <= 120:
                raise ValueError
        if "size" in opts:
            w, h = (int(x) for x in opts["size"].lower().split("x"))
            if not (framecode.STAMP_WIDTH_PX <= w <= 4096 and 16 <= h <= 4096):
                raise ValueError
            cfg.stream.max_size = (w, h)
    except ValueError:
        raise RemoteError("--mentor options: fps must be 1-120 and size like 1280x720") from None
    if "codec" in opts:
        if opts["codec"].upper() not in ("VP8", "H264"):
            raise RemoteError("--mentor option codec must be VP8 or H264")
        cfg.stream.codec = opts["codec"].upper()
    if "audio" in opts:
        cfg.audio = opts["audio"]
    if "view" in opts:
        if opts["view"] not in {v.view_id for v in BUILTIN_VIEWS}:
            raise RemoteError(f"--mentor option view must be one of {', '.join(v.view_id for v in BUILTIN_VIEWS)}")
        cfg.stream.default_view = opts["view"]
    if "loopback" in opts:
        cfg.ice = IceOptions(include_loopback=opts["loopback"] not in ("0", "false", "no"))
    return cfg
