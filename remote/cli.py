"""`vr-trainer mentor serve|token|schema`: run the mentoring server, issue join tokens."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from remote.errors import RemoteError
from remote.tokens import ROLES, TokenSigner, load_or_create_secret, parse_duration_s


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
    s.add_argument("--max-viewers", type=int, default=8, help="experts + observers per session")
    s.add_argument("--secret-file", default=None,
                   help="token signing secret (default ~/.config/vr-trainer/mentor-secret)")
    s.set_defaults(func=cmd_serve)

    t = msub.add_parser("token", help="issue a signed, expiring join token")
    t.add_argument("--session", required=True, help="session id (letters, digits, _ - .)")
    t.add_argument("--role", required=True, choices=ROLES)
    t.add_argument("--name", default="", help="display name (and author of marks)")
    t.add_argument("--ttl", default="4h", help="lifetime: 90s, 30m, 4h, 2d (default 4h)")
    t.add_argument("--server", default="http://127.0.0.1:8765", help="server URL used in the printed link")
    t.add_argument("--secret-file", default=None)
    t.add_argument("--json", action="store_true", help="print token and link as JSON")
    t.set_defaults(func=cmd_token)

    sc = msub.add_parser("schema", help="print the message JSON Schema")
    sc.set_defaults(func=cmd_schema)


def _need_sub(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_token(args: argparse.Namespace) -> int:
    signer = TokenSigner(load_or_create_secret(args.secret_file))
    tok = signer.issue(args.session, args.role, args.name, parse_duration_s(args.ttl))
    server = args.server.rstrip("/")
    if not server.startswith(("http://", "https://")):
        raise RemoteError(f"--server {server!r}: give http://host:port or https://host:port")
    if args.role == "trainee":
        link = f"vr-trainer run --mentor {server} --token {tok}"
    else:
        link = f"{server}/console#token={tok}"
    if args.json:
        print(json.dumps({"token": tok, "role": args.role, "session": args.session, "link": link}))
    else:
        print(tok)
        print(("start the resident's session with:\n  " if args.role == "trainee" else "open in a browser:\n  ") + link)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from remote.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from remote.server import ServerConfig, check_bind, start_server

    if not 0 <= args.port <= 65535:
        raise RemoteError(f"--port {args.port}: must be 0-65535")
    if args.max_viewers < 1:
        raise RemoteError("--max-viewers must be at least 1")
    config = ServerConfig(args.host, args.port, args.tls_cert, args.tls_key, list(args.stun), list(args.turn),
                          args.turn_user, args.turn_password, args.turn_secret, relay_only=args.relay_only,
                          max_viewers=args.max_viewers)
    check_bind(config)
    signer = TokenSigner(load_or_create_secret(args.secret_file))

    async def serve() -> None:
        try:
            runner, url, _ = await start_server(signer, config)
        except OSError as e:
            raise RemoteError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
        print(f"mentor server on {url}  (expert console: {url}/console#token=...; Ctrl-C stops)", flush=True)
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
            await runner.cleanup()

    asyncio.run(serve())
    return 0
