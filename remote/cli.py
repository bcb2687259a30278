"""`vr-trainer mentor serve|token|schema`: run the mentoring server, issue join tokens."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from remote.errors import RemoteError
from remote.tokens import ROLES, TokenSigner, default_secret_path, load_or_create_secret, parse_duration_s

DEFAULT_SERVER = "http://127.0.0.1:8765"
DIRECT_MAX_VIEWERS = 8  # the resident's PC sends to each viewer itself
SFU_MAX_VIEWERS = 60  # Janus sends; the server's welcome lists at most 64 peers


def register(subparsers: Any) -> None:
    m = subparsers.add_parser("mentor", help="remote mentoring: server, tokens")
    msub = m.add_subparsers(dest="mentor_command")
    m.set_defaults(func=lambda args: _need_sub(m))

    s = msub.add_parser("serve", help="run the signalling server and the expert console")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (non-loopback needs TLS)")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--tls-cert", default=None, help="PEM certificate chain (https/wss)")
    s.add_argument("--tls-key", default=None, help="PEM private key")
    s.add_argument("--stun", action="append", default=[], metavar="URL", help="STUN server, e.g. stun:host:3478")
    s.add_argument("--turn", action="append", default=[], metavar="URL", help="TURN server, e.g. turn:host:3478")
    s.add_argument("--turn-user", default=None)
    s.add_argument("--turn-password", default=None)
    s.add_argument("--turn-secret", default=None, help="coturn static-auth-secret: per-peer short-lived credentials")
    s.add_argument("--relay-only", action="store_true", help="force media through TURN")
    s.add_argument("--max-viewers", type=int, default=None,
                   help=f"experts + observers per session (default {DIRECT_MAX_VIEWERS}; with --sfu "
                        f"{SFU_MAX_VIEWERS})")
    s.add_argument("--secret-file", default=None,
                   help="token signing secret (default ~/.config/vr-trainer/mentor-secret)")
    s.add_argument("--sfu", choices=("janus",), default=None,
                   help="fan out through a Janus VideoRoom: the resident publishes once, viewers subscribe there")
    s.add_argument("--stack", default=None, metavar="DIR|FILE",
                   help="with --sfu: a `mentor stack up` folder (its stack.json) or a JSON file with janus_ws, "
                        "api_secret, room, pin (default ~/.cache/vr-trainer/mentor-stack)")
    s.set_defaults(func=cmd_serve)

    t = msub.add_parser("token", help="issue a signed, expiring join token")
    t.add_argument("--session", required=True, help="session id (letters, digits, _ - .)")
    t.add_argument("--role", required=True, choices=ROLES)
    t.add_argument("--name", default="", help="display name (and author of marks)")
    t.add_argument("--ttl", default="4h", help="lifetime: 90s, 30m, 4h, 2d (default 4h)")
    t.add_argument("--server", default=None, metavar="URL",
                   help="the server the links and commands point at, e.g. https://mentor.hospital.cn:8443 "
                        "(default: $VR_TRAINER_MENTOR_URL, else the `mentor serve` running on this machine, "
                        f"else {DEFAULT_SERVER})")
    t.add_argument("--secret-file", default=None)
    t.add_argument("--json", action="store_true", help="print token and link as JSON")
    t.set_defaults(func=cmd_token)

    sc = msub.add_parser("schema", help="print the message JSON Schema")
    sc.set_defaults(func=cmd_schema)

    from remote.stack_cli import register_stack

    register_stack(msub)


def _need_sub(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def server_state_path() -> Path:
    """Where a running ``mentor serve`` notes its address (next to the default secret)."""
    return default_secret_path().parent / "mentor-server.json"


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_server_url(secret_file: str | None = None) -> str | None:
    """The URL of the ``mentor serve`` running on this machine that signs with the same secret,
    if one noted it and still runs."""
    try:
        doc = json.loads(server_state_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not _alive(doc.get("pid")) or not isinstance(doc.get("url"), str):
        return None
    if doc.get("secret_file") != _secret_path(secret_file):
        return None
    return str(doc["url"])


def normalise_server_url(url: str) -> str:
    """``https://host:port[/prefix]`` without a trailing slash; a user error for anything else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"--server {url!r}: give http://host:port or https://host:port")
    if parts.query or parts.fragment:
        raise RemoteError(f"--server {url!r}: no query or fragment (options go on the resident's --mentor URL)")
    try:
        _ = parts.port
    except ValueError:
        raise RemoteError(f"--server {url!r}: the port must be a number 0-65535") from None
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def public_url(url: str) -> str:
    """A bound address as others can reach it: 0.0.0.0 or :: becomes this machine's name."""
    parts = urlsplit(url)
    if parts.hostname in ("0.0.0.0", "::"):
        netloc = f"{socket.getfqdn()}:{parts.port}" if parts.port else socket.getfqdn()
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return url


def token_links(server: str, role: str, token: str) -> dict[str, str]:
    """What to hand the person: the resident's command, or the console link."""
    if role == "trainee":
        return {"link": f"vr-trainer run --mentor {server} --token {token}"}
    return {"link": f"{server}/console#token={token}"}


def cmd_token(args: argparse.Namespace) -> int:
    raw = (args.server or os.environ.get("VR_TRAINER_MENTOR_URL") or running_server_url(args.secret_file)
           or DEFAULT_SERVER)
    server = normalise_server_url(raw)
    signer = TokenSigner(load_or_create_secret(args.secret_file))
    tok = signer.issue(args.session, args.role, args.name, parse_duration_s(args.ttl))
    links = token_links(server, args.role, tok)
    if args.json:
        print(json.dumps({"token": tok, "role": args.role, "session": args.session, "server": server, **links}))
    else:
        print(tok)
        if args.role == "trainee":
            print(f"start the resident's session with:\n  {links['link']}")
            if server.startswith("https://"):
                print("  (a self-signed server certificate: set VR_TRAINER_MENTOR_CA=cert.pem for the resident)")
        else:
            print(f"open in a browser:\n  {links['link']}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from remote.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from remote.server import ServerConfig, check_bind, start_server

    if not 0 <= args.port <= 65535:
        raise RemoteError(f"--port {args.port}: must be 0-65535")
    max_viewers = args.max_viewers if args.max_viewers is not None else (
        SFU_MAX_VIEWERS if args.sfu else DIRECT_MAX_VIEWERS)
    if not 1 <= max_viewers <= 63:
        raise RemoteError("--max-viewers must be 1-63")
    turn, turn_secret, sfu = list(args.turn), args.turn_secret, None
    if args.stack and not args.sfu:
        raise RemoteError("--stack needs --sfu janus")
    if args.sfu:
        from remote.fanout import load_sfu_room
        from remote.stack import default_stack_dir

        sfu = load_sfu_room(args.stack or default_stack_dir())
        if not turn and sfu.turn_url:  # the stack's coturn, with per-peer credentials
            turn, turn_secret = [sfu.turn_url], sfu.turn_secret
    config = ServerConfig(args.host, args.port, args.tls_cert, args.tls_key, list(args.stun), turn,
                          args.turn_user, args.turn_password, turn_secret, relay_only=args.relay_only,
                          max_viewers=max_viewers, sfu=sfu)
    check_bind(config)
    signer = TokenSigner(load_or_create_secret(args.secret_file))

    async def serve() -> None:
        try:
            runner, url, _ = await start_server(signer, config)
        except OSError as e:
            raise RemoteError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
        shown = public_url(url)
        print(f"mentor server on {shown}  (expert console: {shown}/console#token=...; Ctrl-C stops)\n"
              f"tokens for it: vr-trainer mentor token --server {shown} --session ID --role expert|trainee|observer",
              flush=True)
        if sfu is not None:
            print(f"fan-out: each session gets its own private Janus room at {sfu.janus_ws} (from {sfu.source}); "
                  "the resident publishes once, viewers subscribe there", flush=True)
        state = _note_server(shown, _secret_path(args.secret_file))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            await stop.wait()
        finally:
            if state is not None:
                _forget_server(state)
            await runner.cleanup()

    asyncio.run(serve())
    return 0


def _secret_path(secret_file: str | None) -> str:
    return str((Path(secret_file) if secret_file else default_secret_path()).expanduser().resolve())


def _note_server(url: str, secret_file: str) -> Path | None:
    """Let ``mentor token`` on this machine find this server (best effort)."""
    p = server_state_path()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "secret_file": secret_file}))
        tmp.replace(p)
    except OSError:
        return None
    return p


def _forget_server(p: Path) -> None:
    try:
        if json.loads(p.read_text()).get("pid") == os.getpid():
            p.unlink()
    except (OSError, ValueError, AttributeError):
        pass
