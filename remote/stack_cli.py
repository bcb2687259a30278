"""`vr-trainer mentor stack up|down`: start / stop the local Janus + coturn fan-out stack."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from remote.errors import RemoteError


def register_stack(msub: Any) -> None:
    st = msub.add_parser("stack", help="local fan-out stack: Janus (VideoRoom) + coturn")
    ssub = st.add_subparsers(dest="stack_command")
    st.set_defaults(func=lambda args: (st.print_help(), 2)[1])

    up = ssub.add_parser("up", help="generate configs, start Janus and coturn, wait until both answer")
    up.add_argument("--dir", default=None,
                    help="configs, pid files and logs (default ~/.cache/vr-trainer/mentor-stack)")
    up.add_argument("--bind", default="127.0.0.1", help="address of Janus's WebSocket API (default 127.0.0.1)")
    up.add_argument("--media-ip", default="", help="address for ICE and TURN (default: this machine's first "
                                                     "non-loopback IPv4; Janus never uses loopback for media)")
    up.add_argument("--ws-port", type=int, default=0, help="Janus WebSocket port (default: a free one)")
    up.add_argument("--turn-port", type=int, default=0, help="coturn UDP port (default: a free one)")
    up.add_argument("--json", action="store_true", help="print the stack description as JSON (secrets included)")
    up.add_argument("--serve", action="store_true",
                    help="also start `mentor serve --sfu janus` on this stack (stopped by `stack down`)")
    up.add_argument("--mentor-host", default=None, help="with --serve: its address (default: --bind)")
    up.add_argument("--mentor-port", type=int, default=0, help="with --serve: its port (default: a free one)")
    up.add_argument("--tls-cert", default=None, help="with --serve: PEM certificate (needed beyond loopback)")
    up.add_argument("--tls-key", default=None, help="with --serve: PEM private key")
    up.add_argument("--secret-file", default=None, help="with --serve: token signing secret")
    up.set_defaults(func=cmd_stack_up)

    down = ssub.add_parser("down", help="stop the stack started from --dir")
    down.add_argument("--dir", default=None)
    down.set_defaults(func=cmd_stack_down)


def _dir(args: argparse.Namespace) -> Path:
    from remote.stack import default_stack_dir

    return Path(args.dir).expanduser() if args.dir else default_stack_dir()


def cmd_stack_up(args: argparse.Namespace) -> int:
    from remote.stack import StackConfig, stack_up

    for name in ("ws_port", "turn_port"):
        if not 0 <= getattr(args, name) <= 65535:
            raise RemoteError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be 0-65535")
    if not 0 <= args.mentor_port <= 65535:
        raise RemoteError(f"--mentor-port {args.mentor_port}: must be 0-65535")
    mentor = None
    if args.serve:
        from remote.server import ServerConfig, check_bind

        mentor = ServerConfig(args.mentor_host or args.bind, args.mentor_port, args.tls_cert, args.tls_key)
        check_bind(mentor)  # before anything starts: beyond loopback it needs TLS
    elif args.tls_cert or args.tls_key or args.mentor_host or args.mentor_port or args.secret_file:
        raise RemoteError("--mentor-host, --mentor-port, --tls-cert, --tls-key and --secret-file go with --serve")
    info = stack_up(_dir(args), StackConfig(bind_ip=args.bind, media_ip=args.media_ip, ws_port=args.ws_port,
                                            turn_port=args.turn_port))
    if mentor is not None:
        from remote.stack import save_stack, stack_down
        from remote.stack_mentor import start_mentor

        try:
            info.mentor_url, info.pids["mentor"] = start_mentor(Path(info.dir), mentor, args.secret_file)
            save_stack(info)
        except BaseException:
            stack_down(Path(info.dir))
            raise
    if args.json:
        print(json.dumps(asdict(info)))
        return 0
    print(f"mentor stack up in {info.started_s:.2f} s  (folder {info.dir})\n"
          f"  Janus VideoRoom  {info.janus_ws}  (room {info.room}; API secret and pin in {info.dir}/stack.json)\n"
          f"  coturn TURN      {info.turn_url}  (static-auth-secret; ICE/relay address {info.media_ip})\n"
          f"  logs             {info.dir}/logs/\n"
          f"  pids             janus {info.pids['janus']}, turnserver {info.pids['turnserver']}\n"
          + (f"  mentor server    {info.mentor_url}  (--sfu janus; pid {info.pids['mentor']}; tokens: "
             f"vr-trainer mentor token --server {info.mentor_url} ...)\n" if info.mentor_url else "") +
          f"stop it with: vr-trainer mentor stack down --dir {info.dir}", flush=True)
    return 0


def cmd_stack_down(args: argparse.Namespace) -> int:
    from remote.stack import stack_down

    from remote.stack_mentor import stop_mentor

    d = _dir(args)
    mentor = stop_mentor(d)
    stopped = {**({"mentor": mentor} if mentor else {}), **stack_down(d)}
    if stopped:
        print("stopped " + ", ".join(f"{name} ({pid})" for name, pid in stopped.items()) + f" from {d}")
    else:
        print(f"no stack was running from {d}")
    return 0
