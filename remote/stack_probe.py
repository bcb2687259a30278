"""Readiness probes for `mentor stack up`: Janus's ``info`` over its WebSocket API and one
STUN Binding request to coturn (RFC 5389)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
from typing import Any

import aiohttp

from remote.errors import RemoteError


async def janus_info(ws_url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Janus's ``info`` answer over its WebSocket API."""
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(ws_url, protocols=("janus-protocol",), timeout=aiohttp.ClientWSTimeout(
                    ws_receive=timeout_s, ws_close=1.0)) as ws:
                await ws.send_json({"janus": "info", "transaction": "info"})
                msg = dict(await asyncio.wait_for(ws.receive_json(), timeout_s))
    except aiohttp.ClientError as e:
        raise RemoteError(f"Janus at {ws_url}: {e}") from None
    if msg.get("janus") != "server_info":
        raise RemoteError(f"Janus at {ws_url} answered {msg.get('janus')!r} to info")
    return msg


def stun_binding(host: str, port: int, timeout_s: float = 1.0) -> tuple[str, int]:
    """Send one STUN Binding request (RFC 5389); return the XOR-MAPPED-ADDRESS."""
    tid = secrets.token_bytes(12)
    cookie = 0x2112A442
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        s.sendto(struct.pack("!HHI", 0x0001, 0, cookie) + tid, (host, port))
        data, _ = s.recvfrom(2048)
    kind, length, got_cookie = struct.unpack("!HHI", data[:8])
    if kind != 0x0101 or got_cookie != cookie or data[8:20] != tid:
        raise RemoteError(f"{host}:{port} did not answer a STUN binding request")
    pos = 20
    while pos + 4 <= 20 + length:
        attr, alen = struct.unpack("!HH", data[pos:pos + 4])
        value = data[pos + 4:pos + 4 + alen]
        if attr == 0x0020 and value[1] == 1:  # XOR-MAPPED-ADDRESS, IPv4
            xport = struct.unpack("!H", value[2:4])[0] ^ (cookie >> 16)
            xip = struct.unpack("!I", value[4:8])[0] ^ cookie
            return socket.inet_ntoa(struct.pack("!I", xip)), xport
        pos += 4 + alen + (-alen % 4)
    raise RemoteError(f"{host}:{port}: STUN answer without a mapped address")
