"""The signalling server: tokens, roles, routing, limits, TLS policy, the console files."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl

import aiohttp
import pytest
from remote_helpers import run

from remote.errors import RemoteError
from remote.server import CSP, ServerConfig, ServerThread, check_bind

pytestmark = pytest.mark.timeout(60)


async def join(url: str, token: object, **ws_kw) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse, dict]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(url.replace("http", "ws", 1) + "/ws", **ws_kw)
    await ws.send_str(json.dumps({"v": 1, "type": "join", "token": token}))
    msg = await ws.receive(timeout=5)
    return http, ws, json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {"type": str(msg.type)}


async def next_json(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 5.0) -> dict:
    msg = await ws.receive(timeout=timeout_s)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


@pytest.mark.parametrize("token", [None, "", "vrt1.e30.AAAA", "garbage", 42])
def test_missing_or_wrong_token_is_refused(server, token):
    async def go():
        http, ws, first = await join(server.url, token)
        assert first["type"] == "error" and first["code"] == "unauthorized"
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 4401
        await http.close()

    run(go(), 20)


def test_expired_token_and_first_message_not_join(server, signer):
    async def go():
        http, ws, first = await join(server.url, signer.issue("s", "expert", ttl_s=1, now_s=1000))
        assert first["code"] == "unauthorized" and "expired" in first["message"]
        await http.close()
        async with aiohttp.ClientSession() as h2:
            ws = await h2.ws_connect(server.url.replace("http", "ws", 1) + "/ws")
            await ws.send_str(json.dumps({"v": 1, "type": "ping"}))
            assert (await next_json(ws))["code"] == "unauthorized"

    run(go(), 20)


def test_roles_routing_and_relay(server, signer):
    async def go():
        sess = "route-1"
        h1, tr, w1 = await join(server.url, signer.issue(sess, "trainee", "res"))
        assert w1["type"] == "welcome" and w1["role"] == "trainee" and w1["peers"] == []
        h2, ex, w2 = await join(server.url, signer.issue(sess, "expert", "dr"))
        assert w2["can_annotate"] and w2["peers"][0]["role"] == "trainee"
        joined = await next_json(tr)
        assert joined == {"v": 1, "type": "peer-joined",
                          "peer": {"peer_id": w2["peer_id"], "role": "expert", "name": "dr"}}
        h3, ob, w3 = await join(server.url, signer.issue(sess, "observer", "student"))
        assert not w3["can_annotate"]
        assert (await next_json(tr))["peer"]["role"] == "observer"
        # trainee -> expert, with the authenticated sender filled in
        await tr.send_str(json.dumps({"v": 1, "type": "signal", "to": w2["peer_id"],
                                      "data": {"kind": "offer", "sdp": "v=0"}}))
        got = await next_json(ex)
        assert got["from"] == w1["peer_id"] and got["data"] == {"kind": "offer", "sdp": "v=0"}
        # a viewer may not signal another viewer
        await ex.send_str(json.dumps({"v": 1, "type": "signal", "to": w3["peer_id"],
                                      "data": {"kind": "end-of-candidates"}}))
        assert (await next_json(ex))["code"] == "no_peer"
        # viewer -> trainee without "to"
        await ob.send_str(json.dumps({"v": 1, "type": "signal",
                                      "data": {"kind": "candidate", "candidate": "c", "sdpMid": "0"}}))
        got = await next_json(tr)
        assert got["from"] == w3["peer_id"] and got["data"]["kind"] == "candidate"
        # an observer's token in another session sees nobody
        h4, other, w4 = await join(server.url, signer.issue("elsewhere", "observer"))
        assert w4["peers"] == []
        await ex.close()
        assert await next_json(tr) == {"v": 1, "type": "peer-left", "peer_id": w2["peer_id"]}
        for h in (h1, h2, h3, h4):
            await h.close()

    run(go(), 30)


def test_second_trainee_replaces_the_first(server, signer):
    async def go():
        h1, t1, _ = await join(server.url, signer.issue("rep", "trainee"))
        h2, t2, w2 = await join(server.url, signer.issue("rep", "trainee"))
        assert w2["type"] == "welcome"
        assert (await next_json(t1))["code"] == "replaced"
        await h1.close()
        await h2.close()

    run(go(), 20)


def test_session_full(signer):
    with ServerThread(signer, ServerConfig(port=0, max_viewers=1)) as srv:
        async def go():
            h1, _, w1 = await join(srv.url, signer.issue("full", "expert"))
            h2, _, w2 = await join(srv.url, signer.issue("full", "observer"))
            assert w1["type"] == "welcome" and w2["code"] == "full"
            await h1.close()
            await h2.close()

        run(go(), 20)


def test_hostile_signalling_is_dropped_and_counted(server, signer):
    from hostile_messages import hostile_messages

    async def go():
        http, ws, w = await join(server.url, signer.issue("hostile-ws", "expert"))
        before = server.server.counters["dropped"]
        n = 0
        for m in hostile_messages(2000, seed=9):
            if isinstance(m, str):
                try:
                    m.encode("utf-8")
                except UnicodeEncodeError:
                    m = m.encode("utf-8", "surrogatepass")
            if isinstance(m, bytes):
                await ws.send_bytes(m)
            else:
                await ws.send_str(m)
            n += 1
        await asyncio.sleep(0.3)  # the flood used up the rate limit; let it refill
        await ws.send_str(json.dumps({"v": 1, "type": "ping"}))
        while (await next_json(ws, 10))["type"] != "pong":
            pass
        assert server.server.counters["dropped"] - before >= 1900
        await http.close()

    run(go(), 40)


def test_console_and_security_headers(server):
    async def go():
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "console"  # relative: a proxy may add a prefix
            async with http.get(server.url + "/console") as r:
                body = await r.text()
                assert r.status == 200 and "console.js" in body
                assert r.headers["Content-Security-Policy"] == CSP and r.headers["Referrer-Policy"] == "no-referrer"
            for f in ("console.js", "framecode.js", "console.css"):
                async with http.get(server.url + "/static/" + f) as r:
                    assert r.status == 200, f
            async with http.get(server.url + "/static/../server.py") as r:
                assert r.status in (403, 404)
            async with http.get(server.url + "/schema.json") as r:
                assert (await r.json())["version"] == 1

    run(go(), 20)


def test_bind_policy():
    check_bind(ServerConfig(host="127.0.0.1"))
    check_bind(ServerConfig(host="::1"))
    for host in ("0.0.0.0", "192.0.2.2", "example.org"):
        with pytest.raises(RemoteError, match="without TLS"):
            check_bind(ServerConfig(host=host))
    with pytest.raises(RemoteError, match="both"):
        check_bind(ServerConfig(host="0.0.0.0", tls_cert="/x.pem"))
    with pytest.raises(RemoteError, match="STUN"):
        check_bind(ServerConfig(stun_urls=["stun.example.org"]))
    with pytest.raises(RemoteError, match="--relay-only"):
        check_bind(ServerConfig(relay_only=True))
    with pytest.raises(RemoteError, match="TURN"):
        check_bind(ServerConfig(turn_urls=["turn.example.org"]))


def test_ice_servers_handed_out(signer):
    cfg = ServerConfig(port=0, stun_urls=["stun:stun.example.org:3478"], turn_urls=["turn:turn.example.org:3478"],
                       turn_secret="s3cret", relay_only=True)
    with ServerThread(signer, cfg) as srv:
        async def go():
            http, ws, w = await join(srv.url, signer.issue("ice", "expert"))
            stun, turn = w["ice_servers"]
            assert stun == {"urls": ["stun:stun.example.org:3478"]}
            assert turn["username"].endswith(":" + w["peer_id"]) and len(turn["credential"]) == 28
            assert w["ice_transport_policy"] == "relay"
            await http.close()

        run(go(), 20)


def _self_signed(tmp_path):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_p, key_p = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_p.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return str(cert_p), str(key_p)


def test_tls_server(signer, tmp_path):
    cert, key = _self_signed(tmp_path)
    with ServerThread(signer, ServerConfig(port=0, tls_cert=cert, tls_key=key)) as srv:
        assert srv.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=cert)

        async def go():
            http, ws, w = await join(srv.url, signer.issue("tls", "expert"), ssl=ctx)
            assert w["type"] == "welcome"
            await http.close()
            async with aiohttp.ClientSession() as h:
                with pytest.raises(aiohttp.ClientConnectorError):
                    await h.get(srv.url + "/console")  # not trusted without the CA

        run(go(), 20)
