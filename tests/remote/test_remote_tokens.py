"""Join tokens: standard JWTs (HS256), signed, expiring, role- and session-bound."""

from __future__ import annotations

import base64
import json
import os
import stat
import time

import jwt
import pytest

from remote.errors import RemoteError, TokenError
from remote.tokens import OLD_TOKEN_MESSAGE, TokenSigner, load_or_create_secret, parse_duration_s

SECRET = b"s" * 64  # long enough for HS512 too


def test_issue_and_verify_roundtrip(signer):
    tok = signer.issue("or-3", "expert", "Dr Wang 王医生", ttl_s=600)
    c = signer.verify(tok)
    assert (c.session_id, c.role, c.name) == ("or-3", "expert", "Dr Wang 王医生")
    assert c.can_annotate
    assert not signer.verify(signer.issue("or-3", "observer")).can_annotate


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),  # signature
    lambda t: t.replace(".", ".x", 1),  # claims
    lambda t: "",
    lambda t: "eyJhbGciOiJIUzI1NiJ9.abc",
    lambda t: "x" * 5000,
    lambda t: None,
])
def test_forged_or_malformed_tokens_are_refused(signer, mutate):
    with pytest.raises(TokenError):
        signer.verify(mutate(signer.issue("s", "expert")))


def test_other_secret_and_expiry_refused(signer):
    tok = signer.issue("s", "trainee", ttl_s=60, now_s=1_000_000)
    with pytest.raises(TokenError, match="signature"):
        TokenSigner(b"k" * 32).verify(tok, now_s=1_000_010)
    assert signer.verify(tok, now_s=1_000_030).role == "trainee"
    with pytest.raises(TokenError, match="expired"):
        signer.verify(tok, now_s=1_000_061)


def test_issue_refuses_bad_input(signer):
    for kwargs in ({"role": "admin"}, {"session_id": "bad id!"}, {"ttl_s": 0}, {"name": "x" * 100}):
        args = {"session_id": "s", "role": "expert", **kwargs}
        with pytest.raises(RemoteError):
            signer.issue(args.pop("session_id"), args.pop("role"), **args)


def test_secret_file_created_private_and_reused(tmp_path):
    p = tmp_path / "cfg" / "mentor-secret"
    a = load_or_create_secret(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert load_or_create_secret(p) == a and len(a) >= 32
    p.write_text("short")
    with pytest.raises(RemoteError):
        load_or_create_secret(p)


def test_durations():
    assert parse_duration_s("90") == 90 and parse_duration_s("15m") == 900 and parse_duration_s("2d") == 172800
    with pytest.raises(RemoteError):
        parse_duration_s("soon")


def test_tokens_are_standard_hs256_jwts_any_jwt_library_reads():
    tok = TokenSigner(SECRET).issue("or-3", "expert", "Dr Li", ttl_s=600)
    assert jwt.get_unverified_header(tok) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"])
    assert {k: claims[k] for k in ("sid", "role", "sub")} == {"sid": "or-3", "role": "expert", "sub": "Dr Li"}
    assert claims["exp"] - claims["iat"] == 600 and claims["jti"]


def test_a_token_from_an_identity_provider_with_the_same_claims_is_accepted():
    now = int(time.time())
    tok = jwt.encode({"sid": "or-9", "role": "observer", "sub": "class", "iat": now, "exp": now + 60,
                      "jti": "idp-1", "iss": "https://idp.hospital.example"}, SECRET, algorithm="HS256")
    c = TokenSigner(SECRET).verify(tok)
    assert (c.session_id, c.role, c.name, c.can_annotate) == ("or-9", "observer", "class", False)


def _claims(**over):
    now = int(time.time())
    # made when the tests are collected: valid for long enough that a long suite reaches them unexpired
    return {"sid": "s", "role": "expert", "sub": "x", "iat": now, "exp": now + 6 * 3600, "jti": "j", **over}


@pytest.mark.parametrize("token,message", [
    (jwt.encode(_claims(role="admin"), SECRET, algorithm="HS256"), "role 'admin' is unknown"),
    (jwt.encode({k: v for k, v in _claims().items() if k != "sid"}, SECRET, algorithm="HS256"), "'sid'"),
    (jwt.encode(_claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256"), "expired"),
    (jwt.encode(_claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 7 * 3600), SECRET, algorithm="HS256"),
     "future"),
    (jwt.encode(_claims(), SECRET, algorithm="HS512"), "accepts HS256 only"),
    (jwt.encode(_claims(), b"k" * 32, algorithm="HS256"), "signature"),
    (jwt.encode(_claims(sid="bad id!"), SECRET, algorithm="HS256"), "session id"),
])
def test_wrong_role_missing_claim_expired_other_algorithm_or_key_refused(token, message):
    with pytest.raises(TokenError, match=message):
        TokenSigner(SECRET).verify(token)


def test_unsigned_alg_none_token_refused():
    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    forged = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims())}."
    with pytest.raises(TokenError, match="accepts HS256 only"):
        TokenSigner(SECRET).verify(forged)


def test_old_hand_written_token_gets_a_clear_message():
    old = ("vrt1.eyJzaWQiOiJzMSIsInJvbGUiOiJleHBlcnQiLCJzdWIiOiJleHBlcnQiLCJpYXQiOjE3OTYyMTgxNDQsImV4cCI6MTc5"
           "NjIzMjU0NCwianRpIjoiYzM5M2M0YjNmZGRlY2NiYSJ9.BjU-Dbc01_kE7xco1ngO05BRIWQE76a-KNJptYoLpfE")
    with pytest.raises(TokenError) as e:
        TokenSigner(SECRET).verify(old)
    assert str(e.value) == OLD_TOKEN_MESSAGE
    assert "older vr-trainer" in OLD_TOKEN_MESSAGE and "vr-trainer mentor token" in OLD_TOKEN_MESSAGE


def test_other_hmac_algorithms_on_request_and_unknown_refused():
    s = TokenSigner(SECRET, algorithm="HS512")
    assert jwt.get_unverified_header(s.issue("s", "expert"))["alg"] == "HS512"
    with pytest.raises(TokenError, match="HS512 only"):
        s.verify(TokenSigner(SECRET).issue("s", "expert"))
    with pytest.raises(RemoteError):
        TokenSigner(SECRET, algorithm="none")
