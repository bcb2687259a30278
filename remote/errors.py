"""Errors a user can cause in the remote-mentoring part (bad token, bad flag, unsafe bind)."""

from __future__ import annotations


class RemoteError(Exception):
    """A user mistake: the message says what was wrong and what to do instead.

    The CLI prints it as ``error: ...`` and exits with status 2."""


class TokenError(RemoteError):
    """A token is missing, malformed, forged, expired or for the wrong role/session."""
