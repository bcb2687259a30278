"""Signed, expiring join tokens: standard JSON Web Tokens (RFC 7519) with a role and a session id.

A token is a compact JWS signed with HMAC (``HS256`` by default; ``HS384``/``HS512`` on
request), made and checked with PyJWT, so a hospital's identity provider can issue them
later with the same claims. Claims: ``sid`` session id, ``role`` (trainee | expert |
observer), ``sub`` display name, ``iat``/``exp`` Unix seconds, ``jti`` random id; all
required. Only the configured algorithm is accepted (never ``none``). The secret lives in
a file readable only by its owner (created on first use); the server and ``mentor token``
read the same file. Tokens in the hand-written ``vrt1.`` format of earlier versions are
refused with a message saying how to get a new one.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from remote.errors import RemoteError, TokenError

ROLES = ("trainee", "expert", "observer")
ALGORITHMS = ("HS256", "HS384", "HS512")
DEFAULT_ALGORITHM = "HS256"
OLD_PREFIX = "vrt1."  # the hand-written format before JWTs
OLD_TOKEN_MESSAGE = ("this token was made by an older vr-trainer; issue a new one with "
                     "`vr-trainer mentor token ...`")
REQUIRED_CLAIMS = ("sid", "role", "sub", "iat", "exp", "jti")
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
    """Issues and verifies join tokens (JWTs) with one secret and one algorithm."""

    def __init__(self, secret: bytes, algorithm: str = DEFAULT_ALGORITHM) -> None:
        if len(secret) < SECRET_MIN_BYTES:
            raise RemoteError(f"mentor secret must be at least {SECRET_MIN_BYTES} bytes")
        if algorithm not in ALGORITHMS:
            raise RemoteError(f"token algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
        self._secret = secret
        self.algorithm = algorithm

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
        return jwt.encode(claims, self._secret, algorithm=self.algorithm, headers={"typ": "JWT"})

    def verify(self, token: object, now_s: float | None = None, leeway_s: float = 30.0) -> TokenClaims:
        """Return the claims of a genuine, unexpired token; raise :class:`TokenError` otherwise."""
        if not isinstance(token, str) or not token:
            raise TokenError("no token given")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token too long")
        if token.startswith(OLD_PREFIX):
            raise TokenError(OLD_TOKEN_MESSAGE)
        claims = self._decode(token)
        try:
            out = TokenClaims(str(claims["sid"]), str(claims["role"]), str(claims["sub"]), int(claims["iat"]),
                              int(claims["exp"]), str(claims["jti"]))
        except (ValueError, KeyError, TypeError):
            raise TokenError("token claims are malformed") from None
        if out.role not in ROLES:
            raise TokenError(f"token role {out.role!r} is unknown")
        if not SESSION_RE.match(out.session_id):
            raise TokenError("token session id is malformed")
        now = time.time() if now_s is None else now_s
        if now > out.expires_s:
            raise TokenError("token expired; ask for a new one (vr-trainer mentor token ...)")
        if out.issued_s > now + leeway_s:
            raise TokenError("token issued in the future (check the clocks)")
        return out

    def _decode(self, token: str) -> dict[str, Any]:
        """Signature, algorithm and required claims (PyJWT); times are checked by :meth:`verify`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenError("not a vr-trainer mentor token (a JWT expected)") from None
        alg = header.get("alg")
        if alg != self.algorithm:
            raise TokenError(f"token signed with {alg!r}; this server accepts {self.algorithm} only")
        try:
            claims = jwt.decode(token, self._secret, algorithms=[self.algorithm],
                                options={"require": list(REQUIRED_CLAIMS), "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False, "verify_aud": False,
                                         "verify_iss": False, "verify_sub": False, "verify_jti": False})
        except jwt.InvalidSignatureError:
            raise TokenError("token signature does not match (wrong server secret or altered token)") from None
        except jwt.MissingRequiredClaimError as e:
            raise TokenError(f"token claims are malformed (no {e.claim!r})") from None
        except jwt.InvalidTokenError:
            raise TokenError("token is not a well-formed JWT (altered or truncated)") from None
        if not isinstance(claims, dict):
            raise TokenError("token claims are malformed")
        return claims


def parse_duration_s(text: str) -> float:
    """'90', '90s', '15m', '4h', '2d' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise RemoteError(f"duration {text!r}: use a number with s, m, h or d (e.g. 4h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
