"""`vr-trainer bench fanout`: what one publisher costs, and how late its frames arrive, as
the class grows (1, 4, 8, 16 subscribers by default), sent directly against through
Janus, in one run on this machine.

* Publisher CPU: CPU seconds per second of the publishing process (all its threads;
  1.00 = one core busy), read from /proc over each measured window. Its frames come from
  a synthetic source (no rendering) through the resident's streaming pipeline
  (:mod:`vr_trainer.bench.fanout_peer`). Through Janus it should stay flat as the class
  grows: one peer connection, one encode. Janus's own CPU is shown beside it.
* Glass-to-glass latency: each picture carries its frame id in the frame-code strip
  (:mod:`remote.framecode`, as in `bench stream`); the publisher notes when it published
  each id, every subscriber when it decoded it (both wall clocks of this machine);
  median and p95 over all subscribers.

Modes (the peer measured in the same run): ``direct`` is aiortc peer to peer out of the
box (one peer connection and one VP8 encode per subscriber); ``direct-shared`` is the
project's direct mode (one encode, the same packets sent on every peer connection);
``janus`` publishes once to a Janus VideoRoom and the subscribers subscribe there. The
ratio columns are direct / Janus.

Janus ignores loopback for ICE, so (as in the tests) Janus runs in its own network
namespace joined to the clients' by a veth pair: root and Debian's janus and coturn
are needed (coturn only because `mentor stack up` starts it too). Publisher and
subscribers run in the clients' namespace: the publisher in its own process, the
subscribers ``--per-process`` to a process (one interpreter receiving 16 streams falls
behind and its backlog would be counted as latency). They share this machine's cores
with the publisher, so on a 2-core machine the latency at 16 subscribers includes
their own decoding. About one frame period of each latency is aiortc's receiver, which
releases a frame when the next one begins.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from remote.errors import RemoteError

MODES = ("direct", "direct-shared", "janus")
MODE_LABELS = {"direct": "direct (encode/peer)", "direct-shared": "direct (shared enc.)", "janus": "through Janus"}
START_TIMEOUT_S = 60.0
ADD_TIMEOUT_S = 90.0


def register(bench_subparsers: Any) -> None:
    b = bench_subparsers.add_parser("fanout", help="publisher CPU and glass-to-glass latency with N subscribers, "
                                                   "direct against through Janus (root)")
    b.add_argument("--subscribers", default="1,4,8,16", help="subscriber counts, increasing (default 1,4,8,16)")
    b.add_argument("--seconds", type=float, default=5.0, help="measured window per point (default 5)")
    b.add_argument("--warmup", type=float, default=1.5, help="seconds after subscribers join before measuring")
    b.add_argument("--size", default="320x240", help="picture WxH (the 16-row frame code goes on top)")
    b.add_argument("--fps", type=float, default=15.0)
    b.add_argument("--modes", default=",".join(MODES), help=f"any of {', '.join(MODES)} (default all)")
    b.add_argument("--per-process", type=int, default=4,
                   help="subscribers per receiving process (default 4: one Python interpreter for 16 lags)")
    b.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    b.set_defaults(func=cmd_bench_fanout)


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RemoteError(f"--subscribers {text!r}: give counts like 1,4,8,16") from None
    if not counts or any(c < 1 for c in counts) or counts != sorted(set(counts)):
        raise RemoteError(f"--subscribers {text!r}: counts must be positive and increasing, like 1,4,8,16")
    if counts[-1] > 64:
        raise RemoteError(f"--subscribers {text!r}: at most 64 subscribers")
    return counts


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise RemoteError(f"--modes {text!r}: choose from {', '.join(MODES)}")
    return [m for m in MODES if m in modes]


def check_can_run(modes: list[str]) -> None:
    """Root and Janus where they are needed, with what to do."""
    if "janus" not in modes:
        return
    if os.geteuid() != 0:
        raise RemoteError("bench fanout runs Janus in its own network namespace (Janus ignores loopback for ICE), "
                          "which needs root: run it as root (sudo .venv/bin/vr-trainer bench fanout), or "
                          "--modes direct,direct-shared for the direct modes alone")
    for prog, pkg in (("ip", "iproute2"), ("janus", "janus"), ("turnserver", "coturn")):
        if shutil.which(prog) is None:
            raise RemoteError(f"bench fanout needs `{prog}`: install Debian's package (apt-get install {pkg}), "
                              "or --modes direct,direct-shared to leave Janus out")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ChildProcess:
    """A fanout_peer process: JSON commands in, JSON lines out (read by a thread)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self._err = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                     text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid  # `ip netns exec` execs the program: the same process

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                continue

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                msg = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RemoteError(f"a benchmark process exited ({self.proc.returncode}): {self._tail()}") from None
                continue
            if msg.get("event") == "error":
                raise RemoteError(f"a benchmark process failed: {msg.get('error')} (log {self.log})")
            if msg.get("event") == event:
                return msg
        raise RemoteError(f"no {event!r} from a benchmark process within {timeout_s:.0f} s (log {self.log})")

    def _tail(self) -> str:
        self._err.flush()
        return self.log.read_text(errors="replace")[-1500:].strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q / 100.0 * len(s)))], 1)


def measure_point(pub: ChildProcess, subs: list[ChildProcess], seconds: float,
                  janus_pid: int | None) -> dict[str, Any]:
    """One measured window with the subscribers already joined."""
    for child in (pub, *subs):
        child.send(cmd="mark")
    for child in (pub, *subs):
        child.expect("marked", 10)

    def cpu() -> tuple[float, float, float, float]:
        return (cpu_s(pub.pid), sum(cpu_s(c.pid) for c in subs), cpu_s(janus_pid) if janus_pid else 0.0,
                time.monotonic())

    c0, s0, j0, t0 = cpu()
    time.sleep(seconds)
    c1, s1, j1, t1 = cpu()
    for child in subs:
        child.send(cmd="collect")
    arrivals = [one for child in subs for one in child.expect("arrivals", 30)["arrivals"]]
    pub.send(cmd="collect")
    published = {int(k): v for k, v in pub.expect("published", 30)["published"].items()}
    lat = [(t - published[fid]) * 1000.0 for one in arrivals for fid, t in one if fid in published]
    fps = [(len(one) - 1) / (one[-1][1] - one[0][1]) if len(one) > 1 and one[-1][1] > one[0][1] else 0.0
           for one in arrivals]  # decoded frames per second over each subscriber's own window
    return {"subscribers": len(arrivals), "publisher_cpu": round((c1 - c0) / (t1 - t0), 3),
            "janus_cpu": round((j1 - j0) / (t1 - t0), 3) if janus_pid else None,
            "subscribers_cpu": round((s1 - s0) / (t1 - t0), 3),  # all subscriber processes (decoding)
            "g2g_median_ms": _pct(lat, 50), "g2g_p95_ms": _pct(lat, 95), "frames": len(lat),
            "fps_min": round(min(fps), 1) if fps else 0.0,
            "fps_median": round(statistics.median(fps), 1) if fps else 0.0}


def bench_mode(mode: str, counts: list[int], args: argparse.Namespace, prefix: list[str], work: Path,
               stack: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every subscriber count for one mode: one publisher; subscribers added, ``--per-process`` to a process."""
    peer = [*prefix, sys.executable, "-m", "vr_trainer.bench.fanout_peer"]
    stack_args = ["--stack", str(work / "stack" / "stack.json")] if mode == "janus" else []
    pub = ChildProcess([*peer, "publish", mode, "--size", args.size, "--fps", str(args.fps), *stack_args],
                       work / f"{mode}-publisher.err")
    subs: list[ChildProcess] = []
    points = []
    try:
        ready = pub.expect("ready", START_TIMEOUT_S)
        where = ["--feed", str(ready["feed"]), *stack_args] if mode == "janus" else ["--url", ready["url"]]
        joined = 0
        for n in counts:
            while joined < n:  # fill the last process, then start another (each has its own interpreter)
                if not subs or joined >= len(subs) * args.per_process:
                    child = ChildProcess([*peer, "subscribe", mode, *where],
                                         work / f"{mode}-subscribers-{len(subs) + 1}.err")
                    subs.append(child)
                    child.expect("ready", START_TIMEOUT_S)
                k = min(n - joined, len(subs) * args.per_process - joined)
                subs[-1].send(cmd="add", n=k)
                subs[-1].expect("added", ADD_TIMEOUT_S)
                joined += k
            time.sleep(args.warmup)
            point = measure_point(pub, subs, args.seconds, stack["pids"]["janus"] if stack else None)
            points.append({"mode": mode, **point})
            print(f"  {mode:>13}: {n:>2} subscribers  publisher CPU {point['publisher_cpu']:.2f}  "
                  f"g2g {point['g2g_median_ms']} ms (p95 {point['g2g_p95_ms']})  fps min {point['fps_min']}  "
                  f"(subscribers' CPU {point['subscribers_cpu']:.2f} in {len(subs)} processes)",
                  file=sys.stderr, flush=True)
    finally:
        for child in subs:
            child.close()
        pub.close()
    return points


def start_stack(nets: Any, work: Path) -> dict[str, Any]:
    """`mentor stack up` inside the SFU namespace; its stack.json."""
    d = work / "stack"
    up = subprocess.run(nets.exec_argv(nets.sfu, sys.executable, "-m", "vr_trainer", "mentor", "stack", "up",
                                       "--dir", str(d), "--bind", nets.sfu_ip, "--media-ip", nets.sfu_ip),
                        capture_output=True, text=True, timeout=60)
    if up.returncode != 0:
        raise RemoteError(f"could not start Janus: {(up.stderr or up.stdout).strip()[-800:]}")
    doc: dict[str, Any] = json.loads((d / "stack.json").read_text())
    return doc


def bench_fanout(args: argparse.Namespace) -> dict[str, Any]:
    from remote.netns import NamespacePair

    counts, modes = parse_counts(args.subscribers), parse_modes(args.modes)
    w, h = _size(args.size)
    if args.seconds <= 0 or args.warmup < 0 or args.fps <= 0 or args.per_process < 1:
        raise RemoteError("--seconds, --fps and --per-process must be positive, --warmup not negative")
    check_can_run(modes)
    work = Path(tempfile.mkdtemp(prefix="vr-trainer-fanout-"))
    nets = NamespacePair() if os.geteuid() == 0 and shutil.which("ip") else None
    stack: dict[str, Any] | None = None
    out: dict[str, Any] = {"size": [w, h], "fps": args.fps, "seconds": args.seconds, "cpus": os.cpu_count(),
                           "modes": modes, "points": [], "logs": str(work)}
    t0 = time.monotonic()
    try:
        if nets is not None:
            nets.open()
        prefix = nets.exec_argv(nets.peer) if nets is not None else []
        if "janus" in modes:
            assert nets is not None
            stack = start_stack(nets, work)
        for mode in modes:
            out["points"] += bench_mode(mode, counts, args, prefix, work, stack if mode == "janus" else None)
    finally:
        if stack is not None:
            subprocess.run([sys.executable, "-m", "vr_trainer", "mentor", "stack", "down", "--dir",
                            str(work / "stack")], capture_output=True, timeout=30)
        if nets is not None:
            nets.close()
    out["total_s"] = round(time.monotonic() - t0, 1)
    out["ratios"] = ratios(out["points"])
    return out


def _size(text: str) -> tuple[int, int]:
    from remote import framecode

    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise RemoteError(f"--size must look like 320x240, not {text!r}") from None
    if w < framecode.STAMP_WIDTH_PX or h < 16 or w % 2 or h % 2 or w > 3840 or h > 2160:
        raise RemoteError(f"--size {text}: even sides, at least {framecode.STAMP_WIDTH_PX} wide (the frame "
                          "code) and 16 high, at most 3840x2160")
    return w, h


def ratios(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """direct / Janus (publisher CPU, median latency) for each subscriber count and direct mode."""
    janus = {p["subscribers"]: p for p in points if p["mode"] == "janus"}
    out = []
    for p in points:
        j = janus.get(p["subscribers"])
        if p["mode"] == "janus" or j is None:
            continue
        cpu = p["publisher_cpu"] / j["publisher_cpu"] if j["publisher_cpu"] else None
        g2g = (p["g2g_median_ms"] / j["g2g_median_ms"]) if p["g2g_median_ms"] and j["g2g_median_ms"] else None
        out.append({"mode": p["mode"], "subscribers": p["subscribers"], "cpu_ratio": round(cpu, 2) if cpu else None,
                    "g2g_ratio": round(g2g, 2) if g2g else None})
    return out


def format_table(res: dict[str, Any]) -> str:
    """Subscriber counts down, one column group per mode, then direct / Janus."""
    modes, pts = res["modes"], {(p["mode"], p["subscribers"]): p for p in res["points"]}
    rat = {(r["mode"], r["subscribers"]): r for r in res["ratios"]}
    counts = sorted({p["subscribers"] for p in res["points"]})
    w, h = res["size"]

    def g2g(p: dict[str, Any] | None) -> str:
        if p is None or p["g2g_median_ms"] is None:
            return "-"
        return f"{p['g2g_median_ms']:.0f} ({p['g2g_p95_ms']:.0f})"

    lines = [f"bench fanout: {w}x{h} (+16-row frame code) at {res['fps']:g} fps, VP8, {res['seconds']:g} s per point, "
             f"{res['cpus']} CPUs, {res['total_s']} s in all",
             "pub CPU: CPU s per s of the publishing process (1.00 = one core); Janus CPU: the same of Janus",
             "g2g: publish -> decoded at the subscriber, median (p95) ms; fps: the slowest subscriber's frames per s",
             ""]
    head, sub = ["subs"], [""]
    for m in modes:
        head.append(MODE_LABELS[m])
        sub.append(f"{'pub CPU':>7}  {'g2g ms':>12}  {'fps':>4}" + (f"  {'Janus CPU':>9}" if m == "janus" else ""))
    directs = [m for m in modes if m != "janus"] if "janus" in modes else []
    for m in directs:
        head.append(f"{m} / janus")
        sub.append(f"{'CPU x':>6}  {'g2g x':>6}")
    widths = [max(len(a), len(b)) for a, b in zip(head, sub)]
    fmt = " | ".join(f"{{:<{n}}}" for n in widths)
    lines += [fmt.format(*head).rstrip(), fmt.format(*sub).rstrip(), "-+-".join("-" * n for n in widths)]
    for n in counts:
        row = [f"{n:>4}"]
        for m in modes:
            p = pts.get((m, n))
            cell = "-" if p is None else f"{p['publisher_cpu']:>7.2f}  {g2g(p):>12}  {p['fps_min']:>4.1f}"
            if m == "janus" and p is not None and p["janus_cpu"] is not None:
                cell += f"  {p['janus_cpu']:>9.2f}"
            row.append(cell)
        for m in directs:
            r = rat.get((m, n))
            row.append("-" if r is None else f"{_x(r['cpu_ratio']):>6}  {_x(r['g2g_ratio']):>6}")
        lines.append(fmt.format(*row).rstrip())
    med = [(m, statistics.median([r["cpu_ratio"] for r in res["ratios"] if r["mode"] == m and r["cpu_ratio"]] or
                                 [0.0])) for m in directs]
    if med:
        lines += ["", "median over the counts, publisher CPU direct / Janus: "
                  + ", ".join(f"{m} {v:.2f}x" for m, v in med)]
    lines.append(f"logs: {res['logs']}")
    return "\n".join(lines)


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def cmd_bench_fanout(args: argparse.Namespace) -> int:
    res = bench_fanout(args)
    print(json.dumps(res, indent=2) if args.json else format_table(res))
    return 0
