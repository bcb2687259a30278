"""`vr-trainer report FILE... --out report.html [--locale en|zh] [--pdf] [--partial]`, and the
``--cohort DIR --out DIR`` learning curves (:func:`vr_trainer.session.cohort.build_cohort`).

The HTML is written atomically (a temporary file beside it, then renamed); ``--pdf`` prints it
with Debian's headless Chromium to the same name with ``.pdf`` (also atomically)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from vr_trainer.session.report import ReportError, build_report

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")
PRINT_TIMEOUT_S = 120.0


def find_chromium() -> str:
    """The headless Chromium to print with; ReportError saying how to install it when there is none."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ReportError("--pdf needs Chromium (headless) to print the report: apt-get install -y chromium "
                      "(or open the HTML report in a browser and print it)")


def run_chromium(args: list[str], out: Path, timeout_s: float = PRINT_TIMEOUT_S) -> None:
    """Run headless Chromium with ``args`` (which write ``out``) in a fresh profile; ReportError on failure."""
    exe = find_chromium()
    with tempfile.TemporaryDirectory(prefix="vr-report-chromium-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ReportError(f"Chromium did not finish writing {out} within {timeout_s:.0f} s") from None
    if r.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise ReportError(f"Chromium could not write {out} (exit {r.returncode}): " + " | ".join(tail))


def print_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Print ``html_path`` to ``pdf_path`` (A4, no browser header/footer) with headless Chromium, atomically."""
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=pdf_path.parent, prefix=f".{pdf_path.name}.", suffix=".pdf")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        run_chromium(["--no-pdf-header-footer", f"--print-to-pdf={tmp}", html_path.resolve().as_uri()], tmp)
        os.replace(tmp, pdf_path)
    finally:
        tmp.unlink(missing_ok=True)
    return pdf_path


def screenshot(html_path: Path, png_path: Path, size: tuple[int, int] = (1100, 2400)) -> Path:
    """A PNG of the top ``size`` (w, h px) of ``html_path`` as headless Chromium draws it."""
    run_chromium([f"--window-size={size[0]},{size[1]}", f"--screenshot={png_path}", html_path.resolve().as_uri()],
                 png_path)
    return png_path


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(files: list[str], out: str | Path, locale: str = "en", pdf: bool = False,
                 partial: bool = False) -> list[Path]:
    """Write the HTML report of ``files`` to ``out`` (and its PDF beside it); returns the paths written."""
    out = Path(out)
    if out.is_dir():
        raise ReportError(f"--out {out} is a folder: give the report's file name, e.g. {out / 'report.html'}")
    html = build_report(files, locale=locale, partial=partial)
    write_text_atomic(out, html)
    written = [out]
    if pdf:
        written.append(print_pdf(out, out.with_suffix(".pdf")))
    return written


def cmd_report(args: argparse.Namespace) -> int:
    if args.cohort:
        if args.files:
            raise ReportError("give either recordings or --cohort DIR, not both")
        try:
            cohort = importlib.import_module("vr_trainer.session.cohort")
        except ImportError as e:
            raise ReportError(f"--cohort is not available in this build ({e})") from None
        settings = cohort.CusumSettings(args.cusum_p0, args.cusum_p1, args.cusum_alpha, args.cusum_beta)
        done = cohort.build_cohort(Path(args.cohort), Path(args.out), args.locale, settings)
        print(json.dumps(done, ensure_ascii=False, default=str))
        return 0
    if not args.files:
        raise ReportError("give one or more recordings (sessions/*.mcap), or --cohort DIR")
    for p in write_report(args.files, args.out, args.locale, args.pdf, args.partial):
        print(p)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="assessment report (HTML, PDF) of recorded sessions, or a cohort's "
                                      "learning curves")
    r.add_argument("files", nargs="*", metavar="FILE",
                   help="recordings (sessions/*.mcap); several of one resident add a progress view")
    r.add_argument("--out", required=True, help="the report file (report.html); with --cohort a folder")
    r.add_argument("--locale", default="en", choices=["en", "zh"], help="language of the report (default en)")
    r.add_argument("--pdf", action="store_true", help="also print it to PDF (same name, .pdf) with headless Chromium")
    r.add_argument("--partial", action="store_true",
                   help="report the readable part of a recording that was cut short or is damaged")
    r.add_argument("--cohort", default=None, metavar="DIR",
                   help="learning curves (CSV, HTML) of every recording under DIR, per resident, into --out DIR")
    for name, default, what in (("p0", 0.2, "acceptable failure rate"), ("p1", 0.4, "unacceptable failure rate"),
                                ("alpha", 0.1, "chance of calling an acceptable rate unacceptable"),
                                ("beta", 0.1, "chance of calling an unacceptable rate acceptable")):
        r.add_argument(f"--cusum-{name}", type=float, default=default, metavar="0..1",
                       help=f"--cohort CUSUM charts: {what} (default {default})")
    r.set_defaults(func=cmd_report)
