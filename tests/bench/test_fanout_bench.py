"""`vr-trainer bench fanout`: what it refuses before starting anything, and a tiny real run
(1 and 2 subscribers, 1.5 s per point, direct and through a real Janus in namespaces)."""

from __future__ import annotations

import argparse
import os
import shutil
from typing import Any

import pytest

from remote.errors import RemoteError
from vr_trainer.bench import fanout

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _args(**over: Any) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    fanout.register(ap.add_subparsers(dest="bench"))
    a = ap.parse_args(["fanout"])
    for k, v in over.items():
        setattr(a, k, v)
    return a


def test_bad_arguments_are_refused_with_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    from vr_trainer.cli import main

    assert fanout.parse_counts("1,4,8,16") == [1, 4, 8, 16]
    for bad in ("4,1", "0,2", "1,1", "x", ""):
        with pytest.raises(RemoteError, match="--subscribers"):
            fanout.parse_counts(bad)
    assert fanout.parse_modes("janus,direct") == ["direct", "janus"]
    with pytest.raises(RemoteError, match="choose from direct, direct-shared, janus"):
        fanout.parse_modes("sfu")
    assert main(["bench", "fanout", "--subscribers", "8,4"]) == 2
    assert "positive and increasing" in capsys.readouterr().err
    assert main(["bench", "fanout", "--size", "100x80"]) == 2  # narrower than the frame code
    assert "at least 272 wide" in capsys.readouterr().err


def test_without_root_or_janus_it_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(RemoteError, match=r"needs root: run it as root .* or\s+--modes direct,direct-shared"):
        fanout.check_can_run(["direct", "janus"])
    fanout.check_can_run(["direct", "direct-shared"])  # no namespaces needed without Janus
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda prog: None if prog == "janus" else f"/usr/bin/{prog}")
    with pytest.raises(RemoteError, match=r"apt-get install janus"):
        fanout.check_can_run(["janus"])


@pytest.mark.timeout(90)
def test_a_tiny_run_gives_every_figure_direct_and_through_janus() -> None:
    why = fanout_missing()
    if why is not None:
        if IN_CI:
            pytest.fail(f"required in CI: {why}")
        pytest.skip(why)
    res = fanout.bench_fanout(_args(subscribers="1,2", seconds=1.5, warmup=0.3, modes="direct,janus"))
    points = {(p["mode"], p["subscribers"]): p for p in res["points"]}
    assert set(points) == {(m, n) for m in ("direct", "janus") for n in (1, 2)}
    for p in points.values():
        assert 0 < p["publisher_cpu"] < 2.0, p
        assert p["g2g_median_ms"] is not None and 0 < p["g2g_median_ms"] < 1000, p  # advancing video, read ids
        assert p["frames"] >= 10 * p["subscribers"] and p["fps_min"] > 3, p
    assert points[("janus", 2)]["janus_cpu"] is not None and points[("direct", 2)]["janus_cpu"] is None
    assert {(r["mode"], r["subscribers"]) for r in res["ratios"]} == {("direct", 1), ("direct", 2)}
    table = fanout.format_table(res)
    for n in (1, 2):
        row = next(line for line in table.splitlines() if line.startswith(f"{n:>4} |"))
        assert row.count("|") == 3 and "-" not in row.split("|")[1], row  # both modes and the ratio have figures
    assert "direct / janus" in table and "median over the counts" in table


def fanout_missing() -> str | None:
    if os.geteuid() != 0:
        return "bench fanout makes network namespaces (root)"
    for prog in ("ip", "janus", "turnserver"):
        if shutil.which(prog) is None:
            return f"`{prog}` (scripts/setup.sh test installs Debian's janus, coturn, iproute2)"
    return None
