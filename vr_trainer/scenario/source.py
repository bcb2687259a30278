"""Reading scenario YAML safely, keeping where every value came from.

Bounded work whatever the input: files over :data:`MAX_FILE_BYTES` are refused before parsing;
composing counts nodes with aliases expanded (so a "billion laughs" alias bomb stops after
:data:`MAX_NODES`), refuses recursive aliases and nesting deeper than :data:`MAX_DEPTH`, and
duplicate mapping keys (which PyYAML would silently overwrite) are reported. The composed node
tree is kept as a :class:`SourceMap` so schema and reference errors point at 1-based line and
column of the value they concern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import Mark, MarkedYAMLError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from vr_trainer.scenario.issues import ScenarioIssue

try:  # libyaml's event parser is ~5x faster than the pure-Python one; composing stays in Python
    from yaml._yaml import CParser as _EventParser  # type: ignore[import-not-found]

    _C_PARSER = True
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _C_PARSER = False

MAX_FILE_BYTES = 1 << 20     # 1 MiB: a scenario with a long demo track is ~20 kB
MAX_NODES = 50_000           # YAML nodes after alias expansion (a 4000-keyframe demo track is ~45k)
MAX_DEPTH = 64               # nesting of mappings/sequences

_MERGE_TAG = "tag:yaml.org,2002:merge"
_FIELD_PART = re.compile(r"^[a-z_][a-z0-9_]*$")


_ARTICLE = {"null": "null (nothing)", "int": "an integer", "float": "a number", "bool": "a boolean (true/false)"}


class YAMLLimitError(MarkedYAMLError):
    """The document is too big, too deep, or aliases itself."""


class _LimitedComposer(Composer):
    """PyYAML's composer with node, depth and alias accounting."""

    def __init__(self) -> None:
        super().__init__()
        self._nodes = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(anchored node) -> expanded node count

    def _add(self, n: int, mark: Mark | None) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise YAMLLimitError(None, None, f"the document has more than {MAX_NODES} values (aliases "
                                 "counted as often as they are used)", mark)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                size = self._sizes.get(id(target))
                if size is None:
                    raise YAMLLimitError(None, None, f"alias *{event.anchor} is used inside its own anchor "
                                         "(a recursive alias)", event.start_mark)
                self._add(size, event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YAMLLimitError(None, None, f"values nest more than {MAX_DEPTH} levels deep", event.start_mark)
        start = self._nodes
        self._add(1, event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if getattr(event, "anchor", None) is not None:
            self._sizes[id(node)] = self._nodes - start
        return node


class _Constructor(SafeConstructor):
    """SafeConstructor whose errors all carry the node's position (PyYAML lets some tagged values
    escape as KeyError or AttributeError: ``!!bool maybe``, ``!!timestamp abc``)."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as e:
            text = str(node.value) if isinstance(node, ScalarNode) else node.id
            why = f" ({e})" if isinstance(e, (ValueError, OverflowError)) else ""
            raise ConstructorError(None, None, f"cannot read {text[:40]!r} as {node.tag.rsplit(':', 1)[-1]}{why}",
                                   node.start_mark) from None

    def _marked(self, fn: Any, node: Node, what: str) -> Any:
        try:
            return fn(self, node)
        except (ValueError, OverflowError) as e:
            text = str(node.value)
            shown = repr(text[:40]) + ("..." if len(text) > 40 else "")
            why = f"{len(text)} digits" if "digits" in str(e) else str(e)
            raise ConstructorError(None, None, f"cannot read {what} {shown} ({why})", node.start_mark) from None

    def construct_yaml_int(self, node: Node) -> Any:
        return self._marked(SafeConstructor.construct_yaml_int, node, "the integer")

    def construct_yaml_float(self, node: Node) -> Any:
        return self._marked(SafeConstructor.construct_yaml_float, node, "the number")

    def construct_yaml_timestamp(self, node: Node) -> Any:
        return self._marked(SafeConstructor.construct_yaml_timestamp, node, "the date")


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor.construct_yaml_float)
_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)

if _C_PARSER:
    class _Loader(_LimitedComposer, _EventParser, _Constructor, Resolver):
        def __init__(self, text: str) -> None:
            _EventParser.__init__(self, text)
            _LimitedComposer.__init__(self)
            _Constructor.__init__(self)
            Resolver.__init__(self)
else:  # pragma: no cover
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(Reader, Scanner, Parser, _LimitedComposer, _Constructor, Resolver):  # type: ignore[no-redef]
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
            _LimitedComposer.__init__(self)
            _Constructor.__init__(self)
            Resolver.__init__(self)


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character ``index`` in ``text``."""
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


@dataclass
class SourceMap:
    """A file's composed YAML nodes: where each value of the data came from."""

    file: str
    root: Node | None
    text: str = ""  # the file's text (for positions inside block scalars)

    def find(self, loc: Sequence[Any]) -> tuple[Node | None, Node | None, list[Any]]:
        """Walk ``loc`` (keys and indexes, as in a pydantic error) as far as the file has it:
        returns (the deepest value node, its key node when it is a mapping value, the path walked)."""
        node, key_node, walked = self.root, None, []
        for part in loc:
            if isinstance(node, MappingNode):
                hit = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == str(part)), None)
                if hit is None:
                    break
                key_node, node = hit
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                key_node, node = None, node.value[part]
            else:
                break
            walked.append(part)
        return node, key_node, walked

    def field_name(self, loc: Sequence[Any]) -> str:
        """``steps[0].complete_when`` from a location; parts pydantic adds (union tags) are dropped."""
        _, _, walked = self.find(loc)
        rest = [p for p in loc[len(walked):] if isinstance(p, int) or (isinstance(p, str) and _FIELD_PART.match(p))]
        return format_field([*walked, *rest])

    def position(self, loc: Sequence[Any], at_key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the value at ``loc`` (of its key with ``at_key``)."""
        node, key_node, walked = self.find(loc)
        if at_key and key_node is not None and len(walked) == len(loc):
            node = key_node
        if node is None:
            return 1, 1
        return node.start_mark.line + 1, node.start_mark.column + 1

    def issue(self, loc: Sequence[Any], message: str, hint: str = "", *, at_key: bool = False,
              severity: str = "error") -> ScenarioIssue:
        line, col = self.position(loc, at_key)
        return ScenarioIssue(self.file, line, col, self.field_name(loc), message, hint,
                             "warning" if severity == "warning" else "error")

    def key_issue(self, loc: Sequence[Any]) -> ScenarioIssue | None:
        """An issue on the first key of the mapping at ``loc`` that YAML reads as something other
        than text (``1:``, ``yes:``, ``~:``); None when there is none."""
        node, _, walked = self.find(loc)
        if not isinstance(node, MappingNode) or len(walked) != len(loc):
            return None
        for k, _ in node.value:
            if isinstance(k, ScalarNode) and k.tag != "tag:yaml.org,2002:str":
                kind = k.tag.rsplit(":", 1)[-1]
                return ScenarioIssue(self.file, k.start_mark.line + 1, k.start_mark.column + 1,
                                     format_field([*walked, k.value]),
                                     f"key '{k.value}' is read as {_ARTICLE.get(kind, 'a ' + kind)}, "
                                     "not a field name", f"quote it ('{k.value}':) or check its spelling")
        return None

    def _source_chars(self, node: ScalarNode, n: int) -> int:
        """How many source characters the first ``n`` characters of a one-line quoted scalar take
        (escapes such as ``\\u0072`` or ``''`` are longer in the file than in the value)."""
        rows = self.text.splitlines() if node.style and self.text else []
        if not 0 <= node.start_mark.line < len(rows):
            return n
        row, i = rows[node.start_mark.line], node.start_mark.column + 1
        widths = {"x": 4, "u": 6, "U": 10}
        for _ in range(n):
            if i >= len(row):
                return n
            if node.style == '"' and row[i] == "\\":
                i += widths.get(row[i + 1] if i + 1 < len(row) else "", 2)
            elif node.style == "'" and row[i:i + 2] == "''":
                i += 2
            else:
                i += 1
        return i - (node.start_mark.column + 1)

    def string_issue(self, loc: Sequence[Any], offset: int, message: str, hint: str = "") -> ScenarioIssue:
        """An issue at 1-based character ``offset`` inside the string value at ``loc``."""
        node, _, walked = self.find(loc)
        line, col = self.position(loc)
        if isinstance(node, ScalarNode) and len(walked) == len(loc):
            style = node.style or ""
            if style in ("", '"', "'") and node.start_mark.line == node.end_mark.line:
                col += (1 if style else 0) + self._source_chars(node, offset - 1)
            elif style in ("|", ">") and self.text:
                # block scalars start on the next line; a literal keeps the file's line breaks
                before = str(node.value)[:max(offset - 1, 0)]
                line = node.start_mark.line + 2 + (before.count("\n") if style == "|" else 0)
                rows = self.text.splitlines()
                first = node.start_mark.line + 1  # the block's first content row sets its indentation
                row = rows[first] if 0 <= first < len(rows) else ""
                indent = len(row) - len(row.lstrip(" "))
                col = indent + 1 + (len(before) - (before.rfind("\n") + 1) if style == "|" else 0)
        return ScenarioIssue(self.file, line, col, self.field_name(loc), message, hint)


def format_field(parts: Sequence[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def read_text(path: Path) -> tuple[str | None, list[ScenarioIssue]]:
    """The file's text, or issues saying why it cannot be read (missing, too big, not UTF-8)."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, [ScenarioIssue(name, 1, 1, "(file)", "no such scenario file",
                                    "give a path to a .yaml scenario (the built-in default is "
                                    "scenarios/pted_l4_l5.yaml)")]
    except OSError as e:
        return None, [ScenarioIssue(name, 1, 1, "(file)", f"cannot read the file ({e.strerror or e})",
                                    "give the path of a readable .yaml file")]
    if len(raw) > MAX_FILE_BYTES:
        try:
            size = f"{path.stat().st_size / 1e6:.1f} MB"
        except OSError:
            size = "more than 1 MB"
        return None, [ScenarioIssue(name, 1, 1, "(file)", f"the file is {size}; scenario files are limited to "
                                    f"{MAX_FILE_BYTES // (1 << 20)} MiB",
                                    "keep long recordings out of the scenario (a demo track of a few "
                                    "hundred keyframes is plenty)")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        head = raw[:e.start].decode("utf-8", errors="replace")
        line, col = _position(head, len(head))
        return None, [ScenarioIssue(name, line, col, "(file)", f"byte 0x{raw[e.start]:02x} is not UTF-8 text",
                                    "save the file as UTF-8")]
    return text, []


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap | None, list[ScenarioIssue]]:
    """(data, source map, issues): syntax errors, limit breaches and duplicate keys as located issues."""
    loader = _Loader(text)
    root: Node | None = None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, SourceMap(file, None), []
        dups = duplicate_keys(root, file)
        if dups:
            return None, SourceMap(file, root, text), dups
        data = loader.construct_document(root)
    except ConstructorError as e:  # a value that cannot be built: locate it on its node
        return None, None, [_syntax_issue(e, file, _path_at(root, e.problem_mark))]
    except MarkedYAMLError as e:
        return None, None, [_syntax_issue(e, file)]
    except yaml.reader.ReaderError as e:
        line, col = _position(text, e.position if _C_PARSER is False else _char_index(text, e.position))
        return None, None, [ScenarioIssue(file, line, col, "(syntax)", f"not valid YAML: {e.reason} "
                                          f"(character {e.character!r})", "remove the control character")]
    except yaml.YAMLError as e:
        return None, None, [ScenarioIssue(file, 1, 1, "(syntax)", f"not valid YAML: {e}", "fix the syntax")]
    finally:
        loader.dispose()
    return data, SourceMap(file, root, text), []


def _char_index(text: str, byte_index: int) -> int:
    """libyaml reports reader errors at a byte offset into the UTF-8 encoding."""
    return len(text.encode("utf-8")[:byte_index].decode("utf-8", errors="ignore"))


_SYNTAX_HINTS = (
    ("found character '\\t'", "YAML indents with spaces, not tabs: replace the tab with spaces"),
    ("tab character", "YAML indents with spaces, not tabs: replace the tab with spaces"),
    ("maximum nesting depth", "flatten the structure; scenarios need only a few levels"),
    ("mapping values are not allowed", "quote the value if it contains ': ', or check the indentation above"),
    ("could not find expected ':'", "each line of a mapping is 'key: value'; check the indentation and quotes"),
    ("found undefined alias", "define the anchor (&name) before using *name"),
    ("expected a single document", "a scenario is one YAML document; remove the '---' separator"),
    ("did not find expected", "check brackets, quotes and indentation at this line"),
    ("found unhashable key", "keys must be plain names"),
    ("recursive alias", "an alias cannot refer to the value that contains it"),
    ("nest more than", "flatten the structure; scenarios need only a few levels"),
    ("more than", "scenario files are small: remove the repeated or generated content"),
    ("cannot read the integer", "write a number of a sensible size"),
    ("cannot read the date", "quote the value if it is text, e.g. \"2.0\""),
    ("could not determine a constructor", "remove the !tag: scenarios use plain YAML values"),
    ("cannot read '", "remove the !!tag or write a value of that type"),
)


def _syntax_issue(e: MarkedYAMLError, file: str, path: list[Any] | None = None) -> ScenarioIssue:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = e.problem or str(e)
    if e.context and not isinstance(e, ConstructorError):
        problem = f"{problem} ({e.context})"
    hint = next((h for needle, h in _SYNTAX_HINTS if needle in problem), "fix the syntax at this line")
    if isinstance(e, YAMLLimitError):
        return ScenarioIssue(file, line, col, "(limits)", problem, hint)
    if path is not None:
        return ScenarioIssue(file, line, col, format_field(path), problem, hint)
    return ScenarioIssue(file, line, col, "(syntax)", f"not valid YAML: {problem}", hint)


def _path_at(root: Node | None, mark: Mark | None) -> list[Any] | None:
    """The key/index path of the node starting at ``mark`` (None when not found)."""
    if root is None or mark is None:
        return None
    stack: list[tuple[Node, list[Any]]] = [(root, [])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if (node.start_mark.line, node.start_mark.column) == (mark.line, mark.column):
            return path
        if isinstance(node, MappingNode):
            stack.extend((v, [*path, k.value if isinstance(k, ScalarNode) else "?"]) for k, v in node.value)
            stack.extend((k, path) for k, _ in node.value)
        elif isinstance(node, SequenceNode):
            stack.extend((v, [*path, i]) for i, v in enumerate(node.value))
    return None


def duplicate_keys(root: Node, file: str) -> list[ScenarioIssue]:
    """Keys given twice in one mapping (YAML loaders keep the last silently). Shared (aliased)
    nodes are visited once."""
    issues: list[ScenarioIssue] = []
    seen: set[int] = set()
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, ScalarNode) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend(node.value)
            continue
        first: dict[tuple[str, str], Node] = {}
        for k, v in node.value:
            stack.append(v)
            if isinstance(k, ScalarNode) and k.tag != _MERGE_TAG:
                prev = first.setdefault((k.tag, k.value), k)
                if prev is not k:
                    path = _path_at(root, v.start_mark) or [k.value]
                    issues.append(ScenarioIssue(
                        file, k.start_mark.line + 1, k.start_mark.column + 1, format_field(path),
                        f"key '{k.value}' is given twice (first at line {prev.start_mark.line + 1})",
                        "remove one of them; YAML would silently keep only the last"))
            else:
                stack.append(k)
    return issues
