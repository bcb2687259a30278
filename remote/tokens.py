"""Signed, expiring join tokens (HMAC-SHA256) with a role and a session id.

Format: ``vrt1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(secret, "vrt1." + claims))>``.
Claims: ``sid`` session id, ``role`` (trainee | expert | observer), ``sub`` display
name, ``iat``/``exp`` Unix seconds, ``jti`` random id. The secret lives in a file
readable only by its owner (created on first use); the server and ``mentor token``
read the same file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from remote.errors import RemoteError, TokenError

ROLES = ("trainee", "expert", "observer")
PREFIX = "vrt1"
MAX_TOKEN_CHARS = 2048
MAX_TTL_S = 7 * 24 * 3600
SESSION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NAME_MAX_CHARS = 64
SECRET_MIN_BYTES = 32


def default_secret_path() -> Path:
    env = os.environ.get("VR_TRAINER_MENTOR_SECRET_FILE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "vr-trainer" / "mentor-secret"


def load_or_create_secret(path: Path | str | None = None, create: bool = True) -> bytes:
    """Read the signing secret; create a random 32-byte one (mode 0600) when missing."""
    p = Path(path) if path else default_secret_path()
    if p.exists():
        raw = p.read_bytes().strip()
        try:
            secret = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        except ValueError:
            raise RemoteError(f"{p}: not a mentor secret (base64 expected); delete it to make a new one") from None
        if len(secret) < SECRET_MIN_BYTES:
            raise RemoteError(f"{p}: secret shorter than {SECRET_MIN_BYTES} bytes; delete it to make a new one")
        return secret
    if not create:
        raise RemoteError(f"{p}: no mentor secret; run `vr-trainer mentor token ...` once to create it")
    p.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(SECRET_MIN_BYTES)
    fd = os.open(str(p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.urlsafe_b64encode(secret))
    return secret


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenClaims:
    session_id: str
    role: str
    name: str
    issued_s: int
    expires_s: int
    token_id: str

    @property
    def can_annotate(self) -> bool:
        return self.role == "expert"


class TokenSigner:
    """Issues and verifies tokens with one secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < SECRET_MIN_BYTES:
            raise RemoteError(f"mentor secret must be at least {SECRET_MIN_BYTES} bytes")
        self._secret = secret

    def _mac(self, signed_part: str) -> bytes:
        return hmac.new(self._secret, signed_part.encode("ascii"), hashlib.sha256).digest()

    def issue(self, session_id: str, role: str, name: str = "", ttl_s: float = 4 * 3600,
              now_s: float | None = None) -> str:
        if role not in ROLES:
            raise RemoteError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not SESSION_RE.match(session_id):
            raise RemoteError(f"session id {session_id!r}: use 1-64 letters, digits, '_', '-', '.'")
        if not (0 < ttl_s <= MAX_TTL_S):
            raise RemoteError(f"token lifetime must be between 1 s and {MAX_TTL_S // 86400} days, not {ttl_s} s")
        name = (name or role).strip()
        if len(name) > NAME_MAX_CHARS or any(ord(c) < 32 for c in name):
            raise RemoteError(f"name must be at most {NAME_MAX_CHARS} printable characters")
        now = int(time.time() if now_s is None else now_s)
        claims = {"sid": session_id, "role": role, "sub": name, "iat": now, "exp": now + int(round(ttl_s)),
                  "jti": secrets.token_hex(8)}
        body = _b64e(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        signed = f"{PREFIX}.{body}"
        return f"{signed}.{_b64e(self._mac(signed))}"

    def verify(self, token: object, now_s: float | None = None, leeway_s: float = 30.0) -> TokenClaims:
        """Return the claims of a genuine, unexpired token; raise :class:`TokenError` otherwise."""
        if not isinstance(token, str) or not token:
            raise TokenError("no token given")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token too long")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise TokenError("not a vr-trainer mentor token")
        try:
            mac = _b64d(parts[2])
        except ValueError:
            raise TokenError("token signature is not base64") from None
        if not hmac.compare_digest(mac, self._mac(f"{parts[0]}.{parts[1]}")):
            raise TokenError("token signature does not match (wrong server secret or altered token)")
        try:
            claims = json.loads(_b64d(parts[1]))
            out = TokenClaims(str(claims["sid"]), str(claims["role"]), str(claims["sub"]), int(claims["iat"]),
                              int(claims["exp"]), str(claims["jti"]))
        except (ValueError, KeyError, TypeError):
            raise TokenError("token claims are malformed") from None
        if out.role not in ROLES:
            raise TokenError(f"token role {out.role!r} is unknown")
        now = time.time() if now_s is None else now_s
        if now > out.expires_s:
            raise TokenError("token expired; ask for a new one (vr-trainer mentor token ...)")
        if out.issued_s > now + leeway_s:
            raise TokenError("token issued in the future (check the clocks)")
        return out


def parse_duration_s(text: str) -> float:
    """'90', '90s', '15m', '4h', '2d' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise RemoteError(f"duration {text!r}: use a number with s, m, h or d (e.g. 4h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
