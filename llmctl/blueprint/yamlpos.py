"""Load YAML keeping every node's position, refusing what a blueprint can never be.

PyYAML's composer gives nodes with marks; we build plain Python data from them ourselves so that
we can (a) reject duplicate keys, which PyYAML silently overwrites, (b) remember the line and column
of every key and value by JSON path, so schema errors point at the right place, and (c) bound the
work an adversarial file can cause (size, nesting, alias expansion).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmctl.errors import BlueprintError

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000

PathKey = tuple[str | int, ...]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Pos:
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class Located:
    """Parsed YAML data plus where each value (and each mapping key) stood in the file."""

    data: Any
    file: str
    values: dict[PathKey, Pos] = field(default_factory=dict)
    keys: dict[PathKey, Pos] = field(default_factory=dict)

    def pos(self, path: PathKey, *, key: bool = False) -> Pos:
        """Position of ``path``, or of its nearest existing ancestor (a missing key points at its parent)."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Pos(1, 1))


class YamlProblem(BlueprintError):
    """Invalid YAML or a structure no blueprint may have, with its position."""

    def __init__(self, file: str, line: int, col: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{col}: LLM-YAML-001: {message}")
        self.file, self.line, self.col, self.detail = file, line, col, message


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a blueprint file, turning every way it can be unreadable into one clear error."""
    p = Path(path)
    shown = str(path)
    if not p.exists():
        raise BlueprintError(
            f"{shown}: no such file; check the path (llmctl init NAME writes a new one)"
        )
    if p.is_dir():
        raise BlueprintError(f"{shown}: is a directory; give the blueprint's YAML file")
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise BlueprintError(
                f"{shown}: {size} bytes is over the {MAX_BYTES} byte limit for a blueprint; "
                "is this the right file?"
            )
        raw = p.read_bytes()
    except PermissionError:
        raise BlueprintError(f"{shown}: permission denied; make the file readable") from None
    except OSError as exc:
        raise BlueprintError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise BlueprintError(f"{shown}: file is empty; llmctl init NAME writes a starter blueprint")
    if b"\x00" in raw:
        raise BlueprintError(f"{shown}: binary file, not YAML; give the blueprint's YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BlueprintError(
            f"{shown}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def load_located(text: str, file: str) -> Located:
    """Parse one YAML document into plain data plus positions."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem(file, line, col, f"invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(file, 1, 1, f"invalid YAML: {exc}") from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise BlueprintError(f"{file}: file has no YAML content; llmctl init NAME writes a starter")
    if len(nodes) > 1:
        m = nodes[1].start_mark
        raise YamlProblem(
            file,
            m.line + 1,
            m.column + 1,
            "several YAML documents in one file; a blueprint is one document (remove the '---')",
        )
    located = Located(data=None, file=file)
    builder = _Builder(located)
    located.data = builder.build(nodes[0], (), 0)
    root = nodes[0]
    if not isinstance(root, yaml.MappingNode):
        m = root.start_mark
        raise YamlProblem(
            file,
            m.line + 1,
            m.column + 1,
            "the top level must be a mapping (apiVersion:, kind:, metadata:, ...)",
        )
    return located


class _Builder:
    def __init__(self, located: Located) -> None:
        self.loc = located
        self.count = 0
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def _fail(self, node: yaml.Node, message: str) -> YamlProblem:
        m = node.start_mark
        return YamlProblem(self.loc.file, m.line + 1, m.column + 1, message)

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._fail(node, f"more than {MAX_NODES} YAML nodes (alias expansion?); simplify")
        if depth > MAX_DEPTH:
            raise self._fail(node, f"nested deeper than {MAX_DEPTH} levels; a blueprint is shallow")
        self.loc.values.setdefault(path, Pos(node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self._fail(key_node, "merge keys ('<<') are not supported in blueprints")
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._fail(key_node, "mapping keys must be plain strings")
                key = self._scalar(key_node)
                if not isinstance(key, str):
                    key = str(key) if not isinstance(key, bool) else str(key).lower()
                if key in out:
                    first = self.loc.keys[path + (key,)]
                    raise self._fail(
                        key_node, f"duplicate key '{key}' (first at line {first.line}); keep one"
                    )
                self.loc.keys[path + (key,)] = Pos(
                    key_node.start_mark.line + 1, key_node.start_mark.column + 1
                )
                out[key] = self.build(value_node, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self._fail(node, f"invalid value: {exc}") from None
        if isinstance(value, _dt.date | _dt.datetime):
            return node.value  # keep dates as the text written; the schema types them as strings
        if isinstance(value, bytes):
            raise self._fail(node, "binary (!!binary) values are not allowed in blueprints")
        if isinstance(value, float) and value != value:  # NaN
            raise self._fail(node, "NaN is not a valid number here")
        return value
