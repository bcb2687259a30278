"""`mentor stack up --serve`: the mentor server in ``--sfu janus`` mode beside the stack's
Janus and coturn, started detached from the same folder (``mentor.pid``, ``logs/mentor.out``)
and stopped by `stack down`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from remote.errors import RemoteError
from remote.server import ServerConfig
from remote.stack import free_port, terminate

MENTOR_START_TIMEOUT_S = 30.0
MENTOR_STOP_TIMEOUT_S = 5.0


def start_mentor(directory: Path, config: ServerConfig, secret_file: str | None = None) -> tuple[str, int]:
    """Start `vr-trainer mentor serve --sfu janus --stack DIR`; return (its URL, its pid)
    once it accepts connections."""
    port = config.port or free_port(config.host, socket.SOCK_STREAM)
    argv = [sys.executable, "-m", "vr_trainer", "mentor", "serve", "--sfu", "janus", "--stack", str(directory),
            "--host", config.host, "--port", str(port)]
    if config.tls_cert and config.tls_key:
        argv += ["--tls-cert", str(Path(config.tls_cert).resolve()), "--tls-key", str(Path(config.tls_key).resolve())]
    if secret_file:
        argv += ["--secret-file", str(Path(secret_file).expanduser().resolve())]
    log = directory / "logs" / "mentor.out"
    with open(log, "ab") as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=directory, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    (directory / "mentor.pid").write_text(f"{p.pid}\n")
    deadline = time.monotonic() + MENTOR_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if p.poll() is not None:
            (directory / "mentor.pid").unlink(missing_ok=True)
            raise RemoteError(f"mentor serve exited at start ({p.returncode}): {log.read_text()[-600:].strip()} "
                              f"(log {log})")
        try:
            with socket.create_connection((config.host, port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        stop_mentor(directory)
        raise RemoteError(f"mentor serve did not listen on {config.host}:{port} within "
                          f"{MENTOR_START_TIMEOUT_S:.0f} s; see {log}")
    host = config.host if ":" not in config.host else f"[{config.host}]"
    return f"{'https' if config.tls_cert else 'http'}://{host}:{port}", p.pid


def mentor_pid(directory: Path) -> int | None:
    """The pid in DIR/mentor.pid if that process still is a `mentor serve`."""
    try:
        pid = int((directory / "mentor.pid").read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"mentor" in argv and b"serve" in argv else None


def stop_mentor(directory: Path) -> int | None:
    """Stop the mentor server started from DIR (SIGTERM, then SIGKILL); its pid, or None."""
    directory = directory.expanduser().resolve()
    pid = mentor_pid(directory)
    if pid is not None:
        terminate([pid], MENTOR_STOP_TIMEOUT_S)
    (directory / "mentor.pid").unlink(missing_ok=True)
    return pid

