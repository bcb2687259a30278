"""Third-party log output turned into one clear line per problem.

trimesh, pydicom, highdicom and nibabel log warnings (trimesh logs a whole
traceback when a PLY names a texture file that is missing).  Importers run
those libraries inside :func:`library_logs`, which keeps the records away
from the user's terminal and hands back short messages; :func:`warn` prints
each as one ``warning: <file>: <what>`` line.
"""

from __future__ import annotations

import logging
import re
import sys
from contextlib import contextmanager
from typing import Iterator

LIBRARIES = ("trimesh", "pydicom", "highdicom", "nibabel")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = " ".join(str(record.getMessage()).split())
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            msg = _explain(msg, exc)
        if msg and msg not in self.messages:
            self.messages.append(msg)


def _explain(msg: str, exc: BaseException) -> str:
    """A logged exception as one sentence (no traceback)."""
    if isinstance(exc, FileNotFoundError) and re.search(r"image|texture", msg, re.IGNORECASE):
        return (f"texture file {str(exc.args[0] if exc.args else exc)!r} named in the file is missing; "
                "the geometry was imported without it (bundles carry no textures)")
    detail = str(exc).strip()
    return f"{msg.rstrip('!.: ')} ({type(exc).__name__}{': ' + detail if detail else ''})"


@contextmanager
def library_logs(libraries: tuple[str, ...] = LIBRARIES) -> Iterator[list[str]]:
    """Collect WARNING+ records of ``libraries`` (not shown); yields the list of messages."""
    handler = _Collect()
    saved = []
    for name in libraries:
        lg = logging.getLogger(name)
        saved.append((lg, lg.propagate, lg.handlers[:]))
        lg.handlers = [handler]
        lg.propagate = False
    try:
        yield handler.messages
    finally:
        for lg, prop, handlers in saved:
            lg.handlers = handlers
            lg.propagate = prop


def warn(label: str, messages: list[str]) -> None:
    """Print one ``warning:`` line per message on stderr."""
    for m in messages:
        print(f"warning: {label}: {m}", file=sys.stderr)
