"""`vr-trainer mentor stack up|down`: a local fan-out stack of Debian's Janus (VideoRoom)
and coturn, with configs the project generates.

Everything lives in one folder (default ``~/.cache/vr-trainer/mentor-stack``)::

    DIR/stack.json            what clients need: Janus URL, API secret, room, pin, TURN (mode 0600)
    DIR/janus.pid, DIR/turnserver.pid
    DIR/janus/janus.jcfg ...  generated Janus configs; plugins/ and transports/ hold
                              links to only the VideoRoom plugin and the WebSocket transport
    DIR/turnserver.conf       generated coturn config (static-auth-secret: short-lived users)
    DIR/logs/                 janus.log, turnserver.log, and both programs' stdout

Janus's WebSocket API listens on ``bind_ip`` only (loopback by default, a namespace's
address in the tests); its admin API is off (no admin transport is loaded); every
request needs the generated ``api_secret``; rooms can only be created with the
generated ``admin_key``; the one room has a generated secret and pin. Janus never
offers loopback addresses for ICE, so ``media_ip`` (an address peers can reach) is
where Janus gathers candidates and where coturn listens and relays.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from base64 import b64encode
from dataclasses import asdict, dataclass, field
from pathlib import Path

from remote.errors import RemoteError
from remote.stack_probe import janus_info, stun_binding

JANUS_LIB_GLOBS = ("/usr/lib/*/janus", "/usr/lib/janus", "/usr/local/lib/janus", "/opt/janus/lib/janus")
VIDEOROOM_PLUGIN = "libjanus_videoroom.so"
WEBSOCKET_TRANSPORT = "libjanus_websockets.so"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


def default_stack_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vr-trainer" / "mentor-stack"


@dataclass
class StackConfig:
    """What the generated configs say. Ports 0 are chosen free at :func:`plan_stack`."""

    bind_ip: str = "127.0.0.1"  # Janus's WebSocket API (never 0.0.0.0)
    media_ip: str = ""  # ICE + TURN address; "" = this machine's first non-loopback IPv4
    ws_port: int = 0
    turn_port: int = 0
    rtp_ports: tuple[int, int] = (20000, 20999)  # Janus's RTP range
    relay_ports: tuple[int, int] = (49160, 49359)  # coturn's relay range
    room: int = 0  # 0 = random
    bitrate_bps: int = 1_000_000
    realm: str = "vr-trainer"
    debug_level: int = 4


@dataclass
class StackInfo:
    """What clients need; written to ``DIR/stack.json``."""

    dir: str
    janus_ws: str
    api_secret: str
    admin_key: str
    room: int
    room_secret: str
    pin: str
    turn_url: str
    turn_secret: str
    realm: str
    media_ip: str
    pids: dict[str, int] = field(default_factory=dict)
    started_s: float = 0.0  # how long `up` took until both servers answered
    mentor_url: str = ""  # `stack up --serve`: the mentor server in --sfu janus mode

    def turn_server(self, name: str = "peer", ttl_s: int = 3600) -> dict[str, str]:
        """A browser-style ICE server entry with short-lived coturn credentials."""
        user, password = turn_credentials(self.turn_secret, name, ttl_s)
        return {"urls": self.turn_url, "username": user, "credential": password}


def turn_credentials(secret: str, name: str, ttl_s: int, now_s: float | None = None) -> tuple[str, str]:
    """coturn ``use-auth-secret`` credentials: user ``<expiry>:<name>``, password
    base64(HMAC-SHA1(secret, user))."""
    user = f"{int((time.time() if now_s is None else now_s) + ttl_s)}:{name}"
    mac = hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()
    return user, b64encode(mac).decode()


# ---- planning and config text -------------------------------------------------------
def janus_lib_dir() -> Path:
    for pattern in JANUS_LIB_GLOBS:
        for d in sorted(glob.glob(pattern)):
            if (Path(d) / "plugins" / VIDEOROOM_PLUGIN).exists():
                return Path(d)
    raise RemoteError("Janus's VideoRoom plugin was not found (looked in /usr/lib/*/janus); "
                      "install Debian's package: apt-get install janus")


def find_program(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise RemoteError(f"`{name}` was not found; install Debian's package: apt-get install {package}")
    return path


def primary_ipv4() -> str:
    """This machine's address toward the outside (no packet is sent), else its first
    non-loopback IPv4 from ``ip``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            ip = str(s.getsockname()[0])
            if not ip.startswith("127."):
                return ip
        except OSError:
            pass
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    raise RemoteError("no non-loopback IPv4 address for media (Janus ignores loopback for ICE); "
                      "pass --media-ip ADDRESS")


def free_port(ip: str, kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def plan_stack(directory: Path, config: StackConfig) -> StackInfo:
    """Choose the ports, room and secrets."""
    if config.bind_ip in ("0.0.0.0", "::", ""):
        raise RemoteError(f"--bind {config.bind_ip!r}: Janus's API must not listen on every interface; "
                          "give a loopback or private address")
    media_ip = config.media_ip or primary_ipv4()
    ws_port = config.ws_port or free_port(config.bind_ip, socket.SOCK_STREAM)
    turn_port = config.turn_port or free_port(media_ip, socket.SOCK_DGRAM)
    return StackInfo(dir=str(directory), janus_ws=f"ws://{config.bind_ip}:{ws_port}", api_secret=_secret(),
                     admin_key=_secret(), room=config.room or secrets.randbelow(2**31 - 2) + 1,
                     room_secret=_secret(), pin=_secret(12), turn_url=f"turn:{media_ip}:{turn_port}?transport=udp",
                     turn_secret=_secret(), realm=config.realm, media_ip=media_ip)


def _secret(n: int = 24) -> str:
    return secrets.token_urlsafe(n)


def _q(s: str) -> str:
    return json.dumps(s)  # a libconfig string: double quotes, backslash escapes


def janus_configs(info: StackInfo, config: StackConfig, directory: Path) -> dict[str, str]:
    """File name (under DIR/janus) -> text."""
    jd, logs = directory / "janus", directory / "logs"
    ws_port = int(info.janus_ws.rsplit(":", 1)[1])
    main = f"""# generated by `vr-trainer mentor stack up`; edits are overwritten
general: {{
\tconfigs_folder = {_q(str(jd))}
\tplugins_folder = {_q(str(jd / "plugins"))}
\ttransports_folder = {_q(str(jd / "transports"))}
\tevents_folder = {_q(str(jd / "events"))}
\tloggers_folder = {_q(str(jd / "loggers"))}
\tlog_to_stdout = false
\tlog_to_file = {_q(str(logs / "janus.log"))}
\tdebug_level = {config.debug_level}
\tdebug_timestamps = true
\tapi_secret = {_q(info.api_secret)}
\tadmin_secret = {_q(_secret())}
\tserver_name = "vr-trainer"
\tsession_timeout = 60
\thide_dependencies = true
}}
media: {{
\trtp_port_range = "{config.rtp_ports[0]}-{config.rtp_ports[1]}"
}}
nat: {{
\tice_enforce_list = {_q(info.media_ip)}
\tignore_mdns = true
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
\tbroadcast = false
}}
"""
    ws = f"""general: {{
\tjson = "plain"
\tws = true
\tws_port = {ws_port}
\tws_ip = {_q(config.bind_ip)}
\twss = false
}}
admin: {{
\tadmin_ws = false
\tadmin_wss = false
}}
"""
    room = f"""general: {{
\tadmin_key = {_q(info.admin_key)}
\tlock_rtp_forward = true
\tevents = false
}}
room-{info.room}: {{
\tdescription = "vr-trainer teaching room"
\tis_private = true
\tsecret = {_q(info.room_secret)}
\tpin = {_q(info.pin)}
\tpublishers = 1
\tbitrate = {config.bitrate_bps}
\tfir_freq = 10
\tvideocodec = "vp8"
\taudiocodec = "opus"
\trecord = false
}}
"""
    return {"janus.jcfg": main, "janus.transport.websockets.jcfg": ws, "janus.plugin.videoroom.jcfg": room}


def coturn_config(info: StackInfo, config: StackConfig, directory: Path) -> str:
    turn_port = int(info.turn_url.split(":")[2].split("?")[0])
    logs = directory / "logs"
    return f"""# generated by `vr-trainer mentor stack up`; edits are overwritten
listening-ip={info.media_ip}
relay-ip={info.media_ip}
listening-port={turn_port}
min-port={config.relay_ports[0]}
max-port={config.relay_ports[1]}
realm={info.realm}
use-auth-secret
static-auth-secret={info.turn_secret}
fingerprint
no-tls
no-dtls
no-tcp-relay
no-cli
no-multicast-peers
no-rfc5780
no-stun-backward-compatibility
userdb={directory / "turndb"}
pidfile={directory / "turnserver.own.pid"}
log-file={logs / "turnserver.log"}
simple-log
verbose
"""


def write_configs(directory: Path, config: StackConfig, info: StackInfo) -> None:
    jd = directory / "janus"
    lib = janus_lib_dir()
    for sub, src in (("plugins", lib / "plugins" / VIDEOROOM_PLUGIN),
                     ("transports", lib / "transports" / WEBSOCKET_TRANSPORT)):
        d = jd / sub
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        if not src.exists():
            raise RemoteError(f"{src} is missing; reinstall Debian's package: apt-get install --reinstall janus")
        (d / src.name).symlink_to(src)
    for sub in ("events", "loggers"):
        (jd / sub).mkdir(parents=True, exist_ok=True)
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    for name, text in janus_configs(info, config, directory).items():
        _write_private(jd / name, text)
    _write_private(directory / "turnserver.conf", coturn_config(info, config, directory))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# ---- up / down ----------------------------------------------------------------------
def stack_up(directory: Path, config: StackConfig) -> StackInfo:
    """Generate the configs, start Janus and coturn detached, wait until both answer."""
    directory = directory.expanduser().resolve()
    if running_pids(directory):
        raise RemoteError(f"a stack already runs from {directory}; `vr-trainer mentor stack down --dir {directory}`")
    janus, turnserver = find_program("janus", "janus"), find_program("turnserver", "coturn")
    t0 = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    info = plan_stack(directory, config)
    write_configs(directory, config, info)
    logs = directory / "logs"
    procs = {
        "janus": [janus, "-C", str(directory / "janus" / "janus.jcfg"), "-F", str(directory / "janus"), "-o"],
        "turnserver": [turnserver, "-c", str(directory / "turnserver.conf"), "--no-stdout-log"],
    }
    for name, argv in procs.items():
        with open(logs / f"{name}.out", "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=directory)
        info.pids[name] = p.pid
        (directory / f"{name}.pid").write_text(f"{p.pid}\n")
    try:
        asyncio.run(_wait_ready(info, START_TIMEOUT_S))
    except Exception:
        stack_down(directory)
        raise
    info.started_s = round(time.monotonic() - t0, 3)
    save_stack(info)
    return info


def save_stack(info: StackInfo) -> None:
    _write_private(Path(info.dir) / "stack.json", json.dumps(asdict(info), indent=2) + "\n")


def load_stack(directory: Path) -> StackInfo:
    p = directory.expanduser() / "stack.json"
    try:
        return StackInfo(**json.loads(p.read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise RemoteError(f"{p}: no running stack described there ({e}); start one with "
                          "`vr-trainer mentor stack up`") from None


def running_pids(directory: Path) -> dict[str, int]:
    """name -> pid for each pid file in DIR whose process still runs that program."""
    found: dict[str, int] = {}
    for name in ("janus", "turnserver"):
        try:
            pid = int((directory / f"{name}.pid").read_text().strip())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            continue
        if Path(cmd.decode(errors="replace")).name == name:
            found[name] = pid
    return found


def stack_down(directory: Path) -> dict[str, int]:
    """Stop the stack started from DIR (SIGTERM, then SIGKILL after a grace period)."""
    directory = directory.expanduser().resolve()
    pids = running_pids(directory)
    terminate(list(pids.values()), STOP_TIMEOUT_S)
    for name in ("janus", "turnserver"):
        (directory / f"{name}.pid").unlink(missing_ok=True)
    (directory / "stack.json").unlink(missing_ok=True)
    (directory / "turnserver.own.pid").unlink(missing_ok=True)
    return pids


def terminate(pids: list[int], timeout_s: float) -> None:
    """SIGTERM to every pid, then SIGKILL to those still running ``timeout_s`` later."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def alive(pid: int) -> bool:
    """The process runs (a zombie does not count; our own exited child is reaped)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# ---- readiness probes -----------------------------------------------------------------
async def _wait_ready(info: StackInfo, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    turn_host, turn_port = info.media_ip, int(info.turn_url.split(":")[2].split("?")[0])
    janus_ok = turn_ok = False
    last: Exception | None = None
    while time.monotonic() < deadline:
        for name, pid in info.pids.items():
            if not alive(pid):
                raise RemoteError(f"{name} exited at start; see {info.dir}/logs/{name}.out and {name}.log")
        try:
            if not janus_ok:
                await janus_info(info.janus_ws, timeout_s=2.0)
                janus_ok = True
            if not turn_ok:
                await asyncio.to_thread(stun_binding, turn_host, turn_port, 1.0)
                turn_ok = True
            return
        except (OSError, asyncio.TimeoutError, RemoteError) as e:
            last = e
            await asyncio.sleep(0.1)
    raise RemoteError(f"the stack did not answer within {timeout_s:.0f} s "
                      f"(janus {'ok' if janus_ok else 'silent'}, coturn {'ok' if turn_ok else 'silent'}: {last}); "
                      f"see {info.dir}/logs/")
