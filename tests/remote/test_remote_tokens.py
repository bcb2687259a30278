"""Join tokens: signed, expiring, role- and session-bound."""

from __future__ import annotations

import os
import stat

import pytest

from remote.errors import RemoteError, TokenError
from remote.tokens import TokenSigner, load_or_create_secret, parse_duration_s


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
    lambda t: "vrt1.abc",
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
