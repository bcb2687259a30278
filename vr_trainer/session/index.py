"""An index of a folder of recordings (SQLite, stdlib ``sqlite3``): one row per recording with
what a cohort report needs (resident, scenario, start time, score, key metrics), keyed by the
file's path, size and modification time, so that re-indexing reads only new or changed files.

The index lives in the recordings folder (``DIR/.vr-trainer-index.sqlite``): it describes that
folder, whatever report is made from it, so every report (to any ``--out``) shares it. When the
folder is not writable (a read-only share) it goes into the report's output folder instead.

Reading a recording takes the fast path when the file is closed: the MCAP summary section's
chunk index leads straight to the chunks holding ``/session`` (the first) and ``/summary``
(the last), so the frames in between are never decompressed. A file cut short (no summary
section) is streamed through by :func:`~vr_trainer.session.reader.read_recording` with
``frames=False`` (frames counted, never built or kept), which keeps its readable part. A file
that cannot be read at all gets status ``unreadable`` and its error; it never stops the index.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vr_trainer.session.resident import UNASSIGNED

INDEX_NAME = ".vr-trainer-index.sqlite"
SCHEMA_VERSION = 1
KEY_METRICS = ("total_time_s", "fluoro_shots", "risk_contacts")
COLUMNS = ("path", "size_bytes", "mtime_ns", "status", "error", "reader", "resident", "scenario_id",
           "scenario_sha256", "bundle_sha256", "started_unix_s", "duration_s", "score", "passed", "pass_mark",
           "total_time_s", "fluoro_shots", "risk_contacts", "critical_errors", "autopilot_skill", "autopilot_seed")
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS recordings (
  path TEXT PRIMARY KEY,          -- relative to the indexed folder
  size_bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
  status TEXT NOT NULL,           -- ok | incomplete (no /summary: cut short) | unreadable
  error TEXT, reader TEXT,        -- reader: summary (fast path) | full
  resident TEXT, scenario_id TEXT, scenario_sha256 TEXT, bundle_sha256 TEXT,
  started_unix_s REAL, duration_s REAL,
  score REAL, passed INTEGER, pass_mark REAL,
  total_time_s REAL, fluoro_shots REAL, risk_contacts REAL, critical_errors INTEGER,
  autopilot_skill REAL, autopilot_seed INTEGER
);
CREATE INDEX IF NOT EXISTS by_resident ON recordings (resident, scenario_id, started_unix_s);
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass
class IndexStats:
    """What one :func:`update_index` did: recordings read, left as they were, dropped (file gone)."""

    index_path: Path
    read: int = 0
    unchanged: int = 0
    removed: int = 0
    seconds: float = 0.0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, error), all of the folder


def index_path_for(folder: Path, out: Path | None = None) -> Path:
    """``folder/.vr-trainer-index.sqlite`` when the folder is writable, else inside ``out``."""
    if os.access(folder, os.W_OK) or out is None:
        return folder / INDEX_NAME
    return out / INDEX_NAME


def recording_files(folder: Path) -> Iterator[Path]:
    """Every ``*.mcap`` and ``*.mcap.partial`` under ``folder`` (recursively), sorted."""
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (p.name.endswith(".mcap") or p.name.endswith(".mcap.partial")):
            yield p


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, SCHEMA_VERSION):  # an index from another version: rebuild it (it is only a cache)
        con.execute("DROP TABLE IF EXISTS recordings")
    con.executescript(SCHEMA)
    return con


def update_index(folder: str | Path, out: str | Path | None = None) -> IndexStats:
    """Bring the index of ``folder`` up to date: read new and changed recordings, drop rows of
    files that are gone. Returns what was done (``read`` == 0 when nothing changed)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(2, "no such folder of recordings", str(folder))
    t0 = time.perf_counter()
    ipath = index_path_for(folder, Path(out) if out is not None else None)
    ipath.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = _connect(ipath)
    except sqlite3.OperationalError:  # e.g. a read-only file system that os.access did not reveal
        if out is None or ipath.parent == Path(out):
            raise
        ipath = Path(out) / INDEX_NAME
        con = _connect(ipath)
    stats = IndexStats(ipath)
    try:
        known = {r[0]: (r[1], r[2]) for r in con.execute("SELECT path, size_bytes, mtime_ns FROM recordings")}
        seen: set[str] = set()
        for f in recording_files(folder):
            rel = f.relative_to(folder).as_posix()
            seen.add(rel)
            st = f.stat()
            if known.get(rel) == (st.st_size, st.st_mtime_ns):
                stats.unchanged += 1
                continue
            row = read_index_row(f)
            if row.get("error"):  # paths relative to the folder, as everywhere in the index
                row["error"] = str(row["error"]).replace(str(f), rel)
            row.update(path=rel, size_bytes=st.st_size, mtime_ns=st.st_mtime_ns)
            con.execute(f"INSERT OR REPLACE INTO recordings ({', '.join(COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(COLUMNS))})", [row.get(c) for c in COLUMNS])
            stats.read += 1
        gone = [p for p in known if p not in seen]
        con.executemany("DELETE FROM recordings WHERE path = ?", [(p,) for p in gone])
        stats.removed = len(gone)
        con.commit()
        stats.unreadable = [(p, e) for p, e in con.execute(
            "SELECT path, error FROM recordings WHERE status = 'unreadable' ORDER BY path")]
    finally:
        con.close()
    stats.seconds = time.perf_counter() - t0
    return stats


def indexed_rows(index_path: Path) -> list[dict[str, Any]]:
    """Every row of the index, as dicts (ordered by resident, scenario, start time, path)."""
    con = sqlite3.connect(index_path)
    try:
        cur = con.execute(f"SELECT {', '.join(COLUMNS)} FROM recordings "
                          "ORDER BY resident, scenario_id, started_unix_s, path")
        return [dict(zip(COLUMNS, r)) for r in cur]
    finally:
        con.close()


# ---- reading one recording ---------------------------------------------------------------
def read_index_row(path: Path) -> dict[str, Any]:
    """The index columns of one recording (never raises: an unreadable file is a row saying so)."""
    try:
        fast = _read_fast(path)
        if fast is not None:
            return fast
        from vr_trainer.session.reader import read_recording

        rec = read_recording(path, frames=False)
        start = _start_s(rec.session, _first_frame_ns(path))
        row = _row(rec.session, rec.summary, start, rec.duration_s, "full")
        if rec.summary is None:
            row.update(status="incomplete", error=rec.damage or "no /summary message (the run did not finish)")
        return row
    except Exception as e:  # noqa: BLE001 - any damage (mcap, zstd, json, a non-MCAP file) is a row, not a stop
        from vr_trainer.session.reader import RecordingError

        what = str(e) if isinstance(e, RecordingError) else f"{type(e).__name__}: {e}"
        return {"status": "unreadable", "error": what[:500]}


def _read_fast(path: Path) -> dict[str, Any] | None:
    """Read ``/session`` and ``/summary`` through the summary section; None when the file has none."""
    if path.name.endswith(".partial"):
        return None
    from mcap.reader import make_reader

    with open(path, "rb") as fh:
        reader = make_reader(fh, validate_crcs=True)
        try:
            summ = reader.get_summary()
        except Exception:  # noqa: BLE001 - no or damaged summary section: the full reader says what is readable
            return None
        if summ is None or not summ.chunk_indexes:
            return None
        session: dict[str, Any] | None = None
        summary: dict[str, Any] | None = None
        for _schema, channel, msg in reader.iter_messages(topics=["/session", "/summary"]):
            if channel.topic == "/session":
                session = json.loads(msg.data)
            else:
                summary = json.loads(msg.data)
        if session is None or session.get("format") != "vr_trainer.session":
            raise ValueError("not a vr-trainer recording (no /session message of this format)")
        # the /session message is stamped 0; the first frame chunk starts at the session's wall-clock start
        starts = [c.message_start_time for c in summ.chunk_indexes if c.message_start_time > 0]
        first_ns = min(starts) if starts else None
        end_ns = max(c.message_end_time for c in summ.chunk_indexes)
        duration = (end_ns - first_ns) / 1e9 if first_ns is not None else None
        row = _row(session, summary, _start_s(session, first_ns), duration, "summary")
        if summary is None:
            row.update(status="incomplete", error="no /summary message (the run did not finish)")
        return row


def _first_frame_ns(path: Path) -> int | None:
    """The wall-clock start (ns) of a file without a summary section: the first chunk after the
    ``/session`` one starts with the first frame."""
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader

    try:
        with open(path, "rb") as fh:
            for record in StreamReader(fh, emit_chunks=True).records:
                if isinstance(record, Chunk) and record.message_start_time > 0:
                    return int(record.message_start_time)
    except Exception:  # noqa: BLE001 - damaged before the first frame chunk: no start time from here
        return None
    return None


def _start_s(session: dict[str, Any], first_ns: int | None) -> float | None:
    if first_ns is not None:
        return first_ns / 1e9
    created = session.get("created_utc")
    if isinstance(created, str):
        import calendar

        try:
            return float(calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            return None
    return None


def _metric(summary: dict[str, Any], name: str) -> float | None:
    m = (summary.get("metrics") or {}).get(name)
    v = m.get("value") if isinstance(m, dict) else None
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _row(session: dict[str, Any], summary: dict[str, Any] | None, start_s: float | None, duration_s: float | None,
         reader: str) -> dict[str, Any]:
    scen = session.get("scenario") or {}
    auto = session.get("autopilot") or {}
    resident = session.get("resident") or UNASSIGNED
    row: dict[str, Any] = {"status": "ok", "error": None, "reader": reader, "resident": resident,
                           "scenario_id": scen.get("id"), "scenario_sha256": scen.get("sha256"),
                           "bundle_sha256": (session.get("bundle") or {}).get("manifest_sha256"),
                           "started_unix_s": start_s,
                           "duration_s": round(duration_s, 3) if duration_s is not None else None,
                           "autopilot_skill": auto.get("skill"), "autopilot_seed": auto.get("seed")}
    if summary is not None:
        score = summary.get("score")
        row.update(score=float(score) if isinstance(score, (int, float)) else None,
                   passed=None if summary.get("passed") is None else int(bool(summary["passed"])),
                   pass_mark=summary.get("pass_mark"), critical_errors=len(summary.get("critical_errors") or []),
                   **{k: _metric(summary, k) for k in KEY_METRICS})
    return row
