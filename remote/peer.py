"""aiortc helpers shared by the trainee publisher and the tests' fake viewers.

ICE host candidates: aioice never offers 127.0.0.1; :func:`configure_ice` can add
it (mentoring on one machine, tests) or offer it alone (tests on loopback), and it
raises the UDP receive buffer (small buffers lose packets even on loopback). These
are process-wide aioice settings, so they are set once per process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aioice.turn
from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.sdp import candidate_from_sdp

log = logging.getLogger("remote.peer")
UDP_RCVBUF_BYTES = 4 * 1024 * 1024


@dataclass
class IceOptions:
    include_loopback: bool = False  # also offer 127.0.0.1 (the browser is on this machine)
    loopback_only: bool = False  # offer only 127.0.0.1 (tests)
    udp_rcvbuf_bytes: int = UDP_RCVBUF_BYTES


_ORIGINAL_HOST_ADDRESSES = aioice.ice.get_host_addresses
_ICE = IceOptions()


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addrs = [] if _ICE.loopback_only else list(_ORIGINAL_HOST_ADDRESSES(use_ipv4, use_ipv6))
    if (_ICE.include_loopback or _ICE.loopback_only) and use_ipv4 and "127.0.0.1" not in addrs:
        addrs.append("127.0.0.1")
    return addrs


def configure_ice(options: IceOptions) -> None:
    """Set the process-wide ICE host-address policy and socket buffer."""
    global _ICE
    _ICE = options
    aioice.ice.get_host_addresses = _host_addresses
    aioice.turn.UDP_SOCKET_BUFFER_SIZE = max(aioice.turn.UDP_SOCKET_BUFFER_SIZE, options.udp_rcvbuf_bytes)


def rtc_configuration(ice_servers: list[dict[str, Any]] | None, policy: str = "all") -> RTCConfiguration:
    """An aiortc configuration from the browser-style list the server hands out."""
    servers = []
    for s in ice_servers or []:
        urls = s.get("urls")
        if not urls:
            continue
        servers.append(RTCIceServer(urls=urls, username=s.get("username"), credential=s.get("credential")))
    pol = RTCIceTransportPolicy.RELAY if policy == "relay" else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=pol, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def prefer_codec(transceiver: RTCRtpTransceiver, mime_name: str) -> None:
    """Put ``mime_name`` (e.g. "VP8") first, keeping its retransmission (rtx) codec."""
    kind = transceiver.kind
    caps = RTCRtpSender.getCapabilities(kind)
    want = f"{kind}/{mime_name}".lower()
    first = [c for c in caps.codecs if c.mimeType.lower() == want]
    if not first:
        raise ValueError(f"codec {mime_name} not available for {kind}")
    rtx = [c for c in caps.codecs if c.mimeType.lower() == f"{kind}/rtx"]
    transceiver.setCodecPreferences(first + rtx)


def candidate_from_browser(data: dict[str, Any]) -> RTCIceCandidate | None:
    """A trickled browser candidate -> aiortc; None for end-of-candidates or one we skip.

    mDNS (``*.local``) host candidates are skipped: the browser reaches us anyway and
    we learn its address as a peer-reflexive candidate."""
    text = str(data.get("candidate") or "")
    if not text:
        return None
    text = text.removeprefix("candidate:")
    cand = candidate_from_sdp(text)
    if cand.ip.endswith(".local"):
        return None
    cand.sdpMid = data.get("sdpMid")
    cand.sdpMLineIndex = data.get("sdpMLineIndex")
    return cand


async def add_browser_candidate(pc: RTCPeerConnection, data: dict[str, Any]) -> bool:
    """Add one trickled candidate; False when skipped or unusable."""
    if data.get("kind") == "end-of-candidates":
        await pc.addIceCandidate(None)
        return True
    try:
        cand = candidate_from_browser(data)
    except (ValueError, IndexError):
        return False
    if cand is None or (cand.sdpMid is None and cand.sdpMLineIndex is None):
        return False
    await pc.addIceCandidate(cand)
    return True
