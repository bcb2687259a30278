"""`bench fluoro`'s agreement: our DRR and plastimatch's drr (exact) of the example CT, same geometry."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from tests.conftest import need
from vr_trainer.bench import fluoro


def test_our_drr_agrees_with_plastimatch(shared_data: Path, gl_ctx, tmp_path: Path):
    need(shutil.which("plastimatch") is not None, "plastimatch not installed (scripts/setup.sh test installs it)")
    ct = shared_data / fluoro.EXAMPLE_CT
    r = fluoro.compare(ct, pixels=128, repeat=1, ctx=gl_ctx)
    assert r["pearson_r"] >= fluoro.TARGET_R, r["pearson_r"]
    # same attenuation model: ours in 1/mm x mm, plastimatch reports cm (x 1/10)
    assert r["scale_ours_over_plastimatch"] == pytest.approx(10.0, rel=0.03)
    off = fluoro.compare(ct, pixels=96, repeat=1, view="oblique", ctx=gl_ctx)  # any view, not only AP
    assert off["pearson_r"] >= fluoro.TARGET_R


class SharedContext:
    """The session's GL context, lent to the CLI (its own would replace the current context)."""

    def __init__(self, ctx) -> None:
        self._ctx = ctx

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def release(self) -> None:
        pass


def test_bench_prints_its_figures(shared_data: Path, gl_ctx, capsys, tmp_path: Path, monkeypatch):
    need(shutil.which("plastimatch") is not None, "plastimatch not installed (scripts/setup.sh test installs it)")
    import moderngl

    monkeypatch.setattr(moderngl, "create_standalone_context", lambda **kw: SharedContext(gl_ctx))
    p = argparse.ArgumentParser()
    fluoro.register(p.add_subparsers())
    args = p.parse_args(["fluoro", "--pixels", "64", "--repeat", "1", "--no-stall", "--json", str(tmp_path / "r.json")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "ours" in out and "plastimatch" in out and "Pearson r" in out and "ratio" in out
    assert (tmp_path / "r.json").is_file()
