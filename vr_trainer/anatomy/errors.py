"""The one exception type users of the anatomy tools can hit."""

from __future__ import annotations


class AnatomyError(Exception):
    """A user mistake in an import or a bundle (corrupt file, wrong units, ...).

    The message names the file and says what to do; the main CLI prints it as
    ``error: <message>`` and exits with status 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
