"""Bad input: every shipped scenario mutated in at least 500 ways ends in located errors or a valid
scenario, within bounded time and memory, never another exception.

Mutations: values replaced by other types, NaN, infinities and huge numbers; keys removed,
renamed, added and duplicated; deep nesting; broken YAML (deleted or duplicated lines, tabs,
stray characters, truncation, invalid UTF-8, unicode); alias bombs; files over the size limit
(up to 10 MB). Each case is checked by the same function `vr-trainer validate` uses.
"""

from __future__ import annotations

import math
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vr_trainer.scenario.loader import REPO_ROOT
from vr_trainer.scenario.source import MAX_NODES
from vr_trainer.scenario.validate import validate_file

DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SCENARIOS = sorted((REPO_ROOT / "scenarios").glob("*.yaml"))
EXAMPLES_PER_SCENARIO = 640
MIN_DISTINCT = 500
CASE_LIMIT_S = 2.0
CASE_LIMIT_BYTES = 160 << 20  # traced peak allocation of one case

VALUES: list[Any] = [
    0, -1, 7, 1.5, -0.0, True, None, "", "x", "four", "3.0 mm", 10**300, 10**4000, -(10**50), 1e308,
    math.nan, math.inf, -math.inf, "1e999", ".nan", "ünïcødé ✓ 中文 🦴 עברית", "\x00\x07\x1b", "a" * 5000,
    [], {}, [1, 2, 3], [1.0, 2.0], {"en": "x"}, {"en": "x", "zh": "中文"}, [[[[]]]], {"a": {"b": {"c": {}}}},
    "reached(kambin)", "all(all(all(", "not(", "reached(kambin, -3)", "shots >= 1e999", "angle(x) within [5, 1]",
    "2026-01-01", "2026-13-45", "yes", "~", "&a", "*a", "!!python/object:os.system", "- a", "{a: b}",
]
TAGS = ["!!bool", "!!int", "!!float", "!!str", "!!null", "!!timestamp", "!!binary", "!!set", "!!omap", "!!pairs",
        "!!seq", "!!map", "!!merge", "!!value", "!<tag:yaml.org,2002:python/none>", "!local", "!!python/name:os.system"]
TAG_VALUES = ["", "maybe", "abc", "1.5", "2026-13-45", "[a]", "{a: 1}", "%%%", "- x"]
SNIPPETS = [
    "\t", ": ", " :", "- ", "[", "]", "{", "}", "'", '"', "#", "&a ", "*a", "*undefined", "!!binary ", "!!str ",
    "<<: *a\n", "---\n", "...\n", "? ", "|\n", ">-\n", "%YAML 1.1\n", "\\", "\x00", "\x85", "\u2028", "\ufeff",
    "9" * 5000, ".inf", "-.nan", "1e99999", "0x" + "f" * 2000, "🦴" * 50, "中文: 值\n",
    "!!bool maybe ", "!!timestamp abc ", "!!float x ", "!!int x ", "!!set ", "!!omap ", "!!pairs ", "!!map ",
    "!!seq ", "!!null ", "!!merge ", "!!binary ", "!<tag:yaml.org,2002:python/none> ", "!local ", "!!python/name:os ",
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for p in path[:-1]:
        data = data[p]
    return data


def _nested(depth: int, flow: bool) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if flow else {"k": value}
    return value


def apply_data_op(data: Any, op: tuple[Any, ...]) -> Any:
    """One structural mutation of the parsed data (returns the new root)."""
    paths = [p for p in _paths(data) if p]
    if not paths:
        return VALUES[op[1] % len(VALUES)]
    path = paths[op[1] % len(paths)]
    parent, key = _parent(data, path), path[-1]
    kind = op[0]
    if kind == "set":
        parent[key] = op[2]
    elif kind == "delete":
        del parent[key]
    elif kind == "rename" and isinstance(parent, dict):
        parent[op[2] or "_"] = parent.pop(key)
    elif kind == "add":
        if isinstance(parent, dict):
            parent[op[2] or "_"] = op[3]
        else:
            parent.append(op[3])
    elif kind == "nest":
        parent[key] = _nested(op[2], op[3])
    elif kind == "swap":  # two items of a list (an effective swap: different positions)
        lists = [q for q in paths if isinstance(_parent(data, q), list) and len(_parent(data, q)) > 1]
        if lists:
            q = lists[op[1] % len(lists)]
            items, a = _parent(data, q), q[-1]
            b = (a + 1 + op[2] % (len(items) - 1)) % len(items)
            items[a], items[b] = items[b], items[a]
    return data


def _bomb(depth: int, breadth: int) -> str:
    lines = ["lol0: &l0 [" + ", ".join(["lol"] * breadth) + "]"]
    lines += [f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * breadth) + "]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


_KEY_VALUE = re.compile(rb"^(\s*(?:- )?[A-Za-z_]+: )(\S.*)$")


def apply_text_op(raw: bytes, op: tuple[Any, ...]) -> bytes:
    """One textual mutation of the file's bytes."""
    kind = op[0]
    lines = raw.split(b"\n")
    i = op[1] % len(lines)
    if kind == "retag":  # a YAML tag on the value of a `key: value` line (the value kept or replaced)
        rows = [j for j, ln in enumerate(lines) if _KEY_VALUE.match(ln)]
        if rows:
            j = rows[op[1] % len(rows)]
            m = _KEY_VALUE.match(lines[j])
            assert m is not None
            value = m.group(2) if op[3] == 0 else TAG_VALUES[op[3] % len(TAG_VALUES)].encode()
            lines[j] = m.group(1) + TAGS[op[2] % len(TAGS)].encode() + b" " + value
    if kind == "del_line":
        del lines[i]
    elif kind == "dup_line":
        lines.insert(i, lines[i])
    elif kind == "tab":
        lines[i] = b"\t" + lines[i]
    elif kind == "indent":
        lines[i] = b" " * op[2] + lines[i].lstrip(b" ") if op[2] >= 0 else lines[i][-op[2]:]
    elif kind == "insert":
        pos = op[2] % (len(raw) + 1)
        return raw[:pos] + op[3].encode("utf-8") + raw[pos:]
    elif kind == "byte":
        pos = op[2] % (len(raw) + 1)
        return raw[:pos] + bytes([op[3]]) + raw[pos:]
    elif kind == "truncate":
        return raw[: op[2] % (len(raw) + 1)]
    elif kind == "bomb":
        return raw + b"\n" + _bomb(op[2], op[3]).encode() if op[1] % 2 else _bomb(op[2], op[3]).encode() + raw
    elif kind == "deep":
        opener, closer = (b"[", b"]") if op[3] else (b"{a: ", b"}")
        lines.insert(i, b"deep: " + opener * op[2] + b"1" + closer * op[2])
    elif kind == "oversize":
        return raw + b"\n#" + b"x" * op[2]
    return b"\n".join(lines)


keys = st.one_of(st.sampled_from(["id", "steps", "when", "metric", "colour", "format_version", "<<", "1", "ïd"]),
                 st.text(max_size=12))
values = st.one_of(st.sampled_from(VALUES), st.integers(), st.floats(), st.text(max_size=40),
                   st.lists(st.integers(), max_size=4))
data_ops = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10**6), values),
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("rename"), st.integers(0, 10**6), keys),
    st.tuples(st.just("add"), st.integers(0, 10**6), keys, values),
    st.tuples(st.just("nest"), st.integers(0, 10**6), st.integers(1, 200), st.booleans()),
    st.tuples(st.just("swap"), st.integers(0, 10**6), st.integers(0, 100)),
)
text_ops = st.one_of(
    st.tuples(st.sampled_from(["del_line", "dup_line", "tab"]), st.integers(0, 10**6)),
    st.tuples(st.just("indent"), st.integers(0, 10**6), st.integers(-4, 6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 10**6),
              st.one_of(st.sampled_from(SNIPPETS), st.text(min_size=1, max_size=8))),
    st.tuples(st.just("byte"), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0x80, 0xFF)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("retag"), st.integers(0, 10**6), st.integers(0, len(TAGS) - 1), st.integers(0, 20)),
    st.tuples(st.just("bomb"), st.integers(0, 1), st.integers(2, 9), st.integers(2, 12)),
    st.tuples(st.just("deep"), st.integers(0, 10**6), st.integers(10, 3000), st.booleans()),
    st.tuples(st.just("oversize"), st.integers(0, 1), st.sampled_from([(1 << 20) + 1, 3 << 20, 10 << 20])),
)
mutations = st.tuples(st.lists(data_ops, max_size=3), st.lists(text_ops, max_size=2)).filter(
    lambda m: bool(m[0] or m[1]))


def mutate(original: str, data: Any, ops: tuple[list, list]) -> bytes:
    data_ops_, text_ops_ = ops
    if data_ops_:
        import copy

        data = copy.deepcopy(data)
        for op in data_ops_:
            data = apply_data_op(data, op)
        raw = yaml.dump(data, Dumper=DUMPER, allow_unicode=True, sort_keys=False, width=200).encode("utf-8")
    else:
        raw = original.encode("utf-8")
    for op in text_ops_:
        raw = apply_text_op(raw, op)
    return raw


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_mutated_scenarios_end_in_located_errors_or_a_valid_scenario(scenario: Path, tmp_path: Path):
    original = scenario.read_text(encoding="utf-8")
    data = yaml.safe_load(original)
    path = tmp_path / scenario.name  # next to nothing: a relative bundle path resolves under assets/
    seen: set[int] = set()
    outcomes = {"valid": 0, "invalid": 0}
    worst = {"s": 0.0, "bytes": 0}

    @settings(max_examples=EXAMPLES_PER_SCENARIO, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
    @given(mutations)
    def case(ops: tuple[list, list]) -> None:
        raw = mutate(original, data, ops)
        seen.add(hash(raw))
        path.write_bytes(raw)
        n_lines = raw.count(b"\n") + 1
        tracemalloc.start()  # traced only while validating (tracing hypothesis too would be 6x slower)
        t0 = time.perf_counter()
        try:
            loaded, issues = validate_file(path)
        finally:
            elapsed = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        worst["s"], worst["bytes"] = max(worst["s"], elapsed), max(worst["bytes"], peak)
        assert elapsed < CASE_LIMIT_S, f"{ops}: took {elapsed:.2f} s"
        assert peak < CASE_LIMIT_BYTES, f"{ops}: peak {peak / 1e6:.0f} MB"
        errors = [i for i in issues if i.severity == "error"]
        if loaded is None:
            assert errors, f"{ops}: no scenario and no error"
        outcomes["invalid" if errors else "valid"] += 1
        for issue in issues:
            assert issue.file == str(path) and issue.field and issue.message, issue
            assert 1 <= issue.line <= n_lines + 1 and issue.col >= 1, f"{ops}: {issue} is not located in the file"
            assert "Traceback" not in str(issue)

    case()
    print(f"{scenario.name}: {len(seen)} distinct mutations, {outcomes}, slowest {worst['s'] * 1000:.0f} ms, "
          f"peak {worst['bytes'] / 1e6:.1f} MB")
    assert len(seen) >= MIN_DISTINCT
    assert outcomes["invalid"] > outcomes["valid"] > 0  # the mutations reach both outcomes


def test_ten_megabyte_file_and_alias_bomb_are_refused_quickly(tmp_path: Path):
    cases = {"big.yaml": SCENARIOS[0].read_bytes() + b"#" * (10 << 20),
             "bomb.yaml": _bomb(9, 10).encode() + SCENARIOS[0].read_bytes(),
             "deep.yaml": b"a:\n" + b"".join(b"  " * (d + 1) + b"k:\n" for d in range(200))}
    for name, raw in cases.items():
        p = tmp_path / name
        p.write_bytes(raw)
        tracemalloc.start()
        t0 = time.perf_counter()
        loaded, issues = validate_file(p)
        elapsed, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert elapsed < 1.0 and peak < (16 << 20), f"{name}: {elapsed:.2f} s, {peak / 1e6:.1f} MB"
        assert loaded is None and len(issues) == 1 and issues[0].line >= 1
    assert "limited to 1 MiB" in validate_file(tmp_path / "big.yaml")[1][0].message
    assert f"more than {MAX_NODES} values" in validate_file(tmp_path / "bomb.yaml")[1][0].message
    assert "levels deep" in validate_file(tmp_path / "deep.yaml")[1][0].message


def test_long_demo_track_validates_and_one_past_the_node_limit_is_refused(tmp_path: Path):
    text = SCENARIOS[0].read_text(encoding="utf-8")  # pted: demo.tool is the file's last list
    for n, valid in ((3000, True), (6000, False)):
        keys = "".join(f"    - {{t_s: {8 + i / 30:.3f}, tip_mm: [0.0, 0.0, {i % 7}.0], "
                       "toward_mm: [-103.9, -60.0, 3.6]}\n" for i in range(n))
        p = tmp_path / "long.yaml"
        p.write_text(text + keys, encoding="utf-8")
        t0 = time.perf_counter()
        loaded, issues = validate_file(p)
        elapsed = time.perf_counter() - t0
        assert elapsed < CASE_LIMIT_S, f"{n} keyframes: {elapsed:.2f} s"
        if valid:
            assert loaded is not None and issues == [] and len(loaded.demo.tool) == 5 + n
        else:
            (issue,) = issues
            assert issue.field == "(limits)" and issue.line > text.count("\n")
