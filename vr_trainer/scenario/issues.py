"""Located problems in a scenario file: ``file:line:col: field: message (hint: ...)``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

MAX_ISSUES = 50  # a file with more problems than this reports the first ones and a count

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class ScenarioIssue:
    """One problem: 1-based ``line`` and ``col`` in ``file``; ``field`` is the path of the value
    (``steps[0].complete_when``); ``hint`` says what to do."""

    file: str
    line: int
    col: int
    field: str
    message: str
    hint: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.field}: {self.message}"
        if self.severity == "warning":
            text = f"{self.file}:{self.line}:{self.col}: {self.field}: warning: {self.message}"
        return text + (f" (hint: {self.hint})" if self.hint else "")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``vr-trainer validate --format json``)."""
        return asdict(self)


def cap_issues(issues: Sequence[ScenarioIssue], limit: int = MAX_ISSUES) -> list[ScenarioIssue]:
    """At most ``limit`` issues, sorted by position, with a last one counting those left out."""
    ordered = sorted(issues, key=lambda i: (i.file, i.line, i.col))
    if len(ordered) <= limit:
        return ordered
    last = ordered[limit - 1]
    more = ScenarioIssue(last.file, last.line, last.col, "(more)",
                         f"{len(ordered) - (limit - 1)} more problems are not shown",
                         "fix the ones above and validate again")
    return ordered[:limit - 1] + [more]


class ScenarioError(ValueError):
    """A scenario file is wrong. ``issues`` holds every located problem (at most
    :data:`MAX_ISSUES`); the message is one ``file:line:col: field: message (hint: ...)`` per line.
    Given a plain string (a problem with no position), ``issues`` is empty."""

    def __init__(self, problem: str | Sequence[ScenarioIssue]) -> None:
        if isinstance(problem, str):
            self.issues: list[ScenarioIssue] = []
            message = problem
        else:
            self.issues = cap_issues(problem)
            message = "\n".join(str(i) for i in self.issues)
        super().__init__(message)
