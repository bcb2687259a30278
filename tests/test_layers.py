"""Import rules of ../shared/ARCHITECTURE.md, checked on the source: each layer imports only
the layers under it, and the pure layers (frame contract, anatomy, simulation, scenario engine,
procedures) reach no GL, window, OpenXR, WebRTC, HTTP or asyncio code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# third-party or stdlib modules that mean GL, a window, a headset, the network or an event loop
IMPURE = ("moderngl", "glfw", "OpenGL", "xr", "pyrender", "aiortc", "aioice", "aiohttp", "asyncio", "av",
          "selenium", "websockets")

# package (as a module prefix) -> the project packages it may import (itself always allowed)
ALLOWED: dict[str, tuple[str, ...]] = {
    "vr_trainer.frame": (),
    "vr_trainer.anatomy": (),
    "vr_trainer.sim": ("vr_trainer.frame", "vr_trainer.anatomy"),
    "vr_trainer.scenario": ("vr_trainer.sim",),
    "vr_trainer.procedures": ("vr_trainer.scenario", "vr_trainer.sim", "vr_trainer.anatomy", "vr_trainer.frame"),
    "vr_trainer.session": ("vr_trainer.scenario", "vr_trainer.sim", "vr_trainer.procedures", "vr_trainer.frame",
                           "vr_trainer.anatomy"),
    "vr_trainer.render": ("vr_trainer.frame", "vr_trainer.sim"),
    "vr_trainer.xr": ("vr_trainer.frame", "vr_trainer.render", "vr_trainer.sim"),
    # remote talks to the app through the bridge contracts only
    "remote": ("vr_trainer.frame", "vr_trainer.sim", "vr_trainer.app.bridge"),
}
PURE = ("vr_trainer.frame", "vr_trainer.anatomy", "vr_trainer.sim", "vr_trainer.scenario", "vr_trainer.procedures",
        "vr_trainer.session")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(source: str, mod: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an import statement in the source names (including ones inside functions)."""
    tree = ast.parse(source)
    package = mod if is_package else mod.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # `from vr_trainer import app` names the submodule vr_trainer.app
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names if name in ("vr_trainer", "remote")]
    return out


def _rule_for(mod: str) -> str | None:
    best = None
    for prefix in ALLOWED:
        if (mod == prefix or mod.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _sources() -> list[Path]:
    return sorted(p for d in ("vr_trainer", "remote") for p in (ROOT / d).rglob("*.py"))


def violations(modules: list[tuple[str, str, str, bool]] | None = None) -> list[str]:
    """Broken rules in ``modules`` ((where, module name, source, is a package); default: the tree)."""
    if modules is None:
        modules = [(str(p.relative_to(ROOT)), _module_name(p), p.read_text(encoding="utf-8"), p.name == "__init__.py")
                   for p in _sources()]
    bad = []
    for file, mod, source, is_package in modules:
        rule = _rule_for(mod)
        if rule is None:
            continue  # app/, bench/, cli: the wiring may import everything
        pure = any(_within(mod, p) for p in PURE)
        for line, name in _imports(source, mod, is_package):
            where = f"{file}:{line}"
            top = name.split(".")[0]
            if pure and top in IMPURE:
                bad.append(f"{where}: {mod} imports {name} (GL/device/network code in a pure layer)")
            if top in ("vr_trainer", "remote") and not _within(name, rule) and name not in ("vr_trainer", "remote"):
                if not any(_within(name, ok) for ok in ALLOWED[rule]):
                    bad.append(f"{where}: {mod} imports {name}, which its layer ({rule}) may not "
                               f"(allowed: {', '.join(ALLOWED[rule]) or 'nothing of the project'})")
    return bad


def test_layers_import_only_what_lies_under_them():
    bad = violations()
    assert not bad, "import rules broken:\n" + "\n".join(bad)


@pytest.mark.parametrize("mod, snippet, expect", [
    ("vr_trainer.sim.probe", "import moderngl\n", "GL/device/network"),
    ("vr_trainer.scenario.probe", "from vr_trainer.app.loop import FrameLoop\n", "may not"),
    ("vr_trainer.procedures.probe", "def f():\n    import asyncio\n", "GL/device/network"),
    ("vr_trainer.sim.probe", "from ..render import renderer\n", "may not"),
    ("vr_trainer.render.probe", "from vr_trainer import app\n", "may not"),
    ("remote.probe", "from vr_trainer.app.session import build_session\n", "may not"),
])
def test_rule_checker_catches_a_bad_import(mod, snippet, expect):
    """The checker itself fails on a violation (a pure module importing GL, a layer importing a higher one)."""
    found = violations([("probe.py", mod, snippet, False)])
    assert found and expect in found[0]
    assert not violations([("probe.py", mod, "import numpy\nfrom dataclasses import dataclass\n", False)])
