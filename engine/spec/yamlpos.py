"""YAML loading that remembers where every value came from.

`load_yaml(text, filename)` returns the plain data and a `Positions` map from a field
path (``("stages", 1, "jobs", 0, "timeout")``) to its line and column, so that errors
found later by pydantic or by the graph checks can point at the file, line and column.

It is also the first line of defence against hostile files: duplicate keys are an error
(PyYAML silently keeps the last), the number of nodes built is bounded (alias
"billion laughs" bombs), and so is the nesting depth.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.errors import SpecError, SpecIssue

__all__ = ["MAX_DEPTH", "MAX_NODES", "Positions", "format_path", "load_mapping_file", "load_yaml"]

MAX_NODES = 200_000
MAX_DEPTH = 64
MAX_BYTES = 4 * 1024 * 1024

# libyaml's parser when PyYAML was built with it: the pure-Python one needs about a minute
# for a 4 MB file of small nodes (a minute of a server thread per hostile file).
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path = tuple[str | int, ...]


@dataclass
class Positions:
    filename: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column of the longest known prefix of `path` (1-based)."""
        p = tuple(path)
        if key and p in self.keys:
            return self.keys[p]
        while True:
            if p in self.values:
                return self.values[p]
            if not p:
                return None, None
            if p in self.keys:
                return self.keys[p]
            p = p[:-1]

    def issue(self, path: Sequence[str | int], message: str, *, key: bool = False) -> SpecIssue:
        line, col = self.locate(path, key=key)
        return SpecIssue(message, file=self.filename, line=line, column=col, field=format_path(path) or None)


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class _Builder:
    def __init__(self, filename: str) -> None:
        self.pos = Positions(filename)
        self.count = 0
        self.scalar = yaml.SafeLoader("")  # only its construct_scalar/resolvers are used

    def fail(self, node: yaml.Node, message: str, path: Path) -> SpecError:
        return SpecError([SpecIssue(message, file=self.pos.filename, line=node.start_mark.line + 1,
                                    column=node.start_mark.column + 1, field=format_path(path) or None)])

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, f"the document expands to more than {MAX_NODES} values "
                                  "(an alias bomb?); refusing to load it", path)
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels", path)
        self.pos.values.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        try:
            return self.scalar.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.fail(node, f"bad value: {exc}", path) from exc
        except ValueError as exc:
            # int() refuses integers of more than 4300 digits (CVE-2020-10735 limit) with a ValueError.
            raise self.fail(node, f"bad value: {str(exc)[:200]}", path) from exc

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    value = self.build(src, path, depth + 1)
                    if not isinstance(value, dict):
                        raise self.fail(src, "a merge key (<<) needs a mapping", path)
                    for k, v in value.items():
                        merged.setdefault(k, v)
                continue
            key = self.build(key_node, (*path, "<key>"), depth + 1)
            if isinstance(key, (list, dict)):
                raise self.fail(key_node, "a mapping key must be a plain value", path)
            if isinstance(key, bool | int | float) or key is None:
                key = str(key).lower() if isinstance(key, bool) or key is None else key
            if key in out:
                raise self.fail(key_node, f"duplicate key {key!r}", (*path, key))
            self.pos.keys[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, (*path, key), depth + 1)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out


_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)


def _count_nodes(text: str, filename: str) -> None:
    """Refuse a document of too many nodes from the parser's events, before building any node
    (composing a hostile 4 MB file takes seconds; counting its events up to the limit, a fraction).

    Raises:
        SpecError: more than MAX_NODES nodes (aliases are counted later, as they expand).
        yaml.YAMLError: the text does not parse (the caller reports it with its position).
    """
    count = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, _NODE_EVENTS):
            count += 1
            if count > MAX_NODES:
                mark = event.start_mark
                raise SpecError([SpecIssue(f"the document has more than {MAX_NODES} values; refusing to load it",
                                           file=filename, line=mark.line + 1 if mark else None,
                                           column=mark.column + 1 if mark else None)])


def load_yaml(text: str | bytes, filename: str = "<pipeline>") -> tuple[Any, Positions]:
    """Parse one YAML document, returning (data, positions).

    Raises:
        SpecError: the text is not valid UTF-8 or YAML, has duplicate keys, or is too large or deep.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise SpecError([SpecIssue(f"file is larger than {MAX_BYTES} bytes", file=filename)])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError([SpecIssue(f"not valid UTF-8 (byte {exc.start}): {exc.reason}", file=filename)]) from exc
    if len(text) > MAX_BYTES:
        raise SpecError([SpecIssue(f"file is larger than {MAX_BYTES} characters", file=filename)])
    builder = _Builder(filename)
    try:
        _count_nodes(text, filename)
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError([SpecIssue(f"invalid YAML: {problem}", file=filename, line=line, column=col)]) from exc
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(f"invalid YAML: {exc}", file=filename)]) from exc
    except RecursionError as exc:
        raise SpecError([SpecIssue(f"nesting deeper than {MAX_DEPTH} levels", file=filename)]) from exc
    if node is None:
        raise SpecError([SpecIssue("the file is empty", file=filename)])
    try:
        data = builder.build(node, (), 0)
    except RecursionError as exc:
        raise SpecError([SpecIssue(f"nesting deeper than {MAX_DEPTH} levels", file=filename)]) from exc
    return data, builder.pos


def load_mapping_file(path: str | os.PathLike[str], what: str, shape: str, *,
                      setting: str | None = None) -> tuple[dict[str, Any], Positions]:
    """A configuration file that must hold one YAML mapping: (data, positions).

    `what` names the file in errors ("deployment config"), `shape` is the error when it is not a
    mapping ("a deployment config is a mapping with `environments:`"), `setting` the environment
    variable that named the file.

    Raises:
        NotFoundError: the file does not exist.
        InputError: it cannot be read.
        SpecError: it is not YAML, or not a mapping (file, line and column).
    """
    from engine.errors import InputError, NotFoundError

    try:
        text = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{what} {path} does not exist" + (f" ({setting})" if setting else "")) from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from exc
    data, pos = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise SpecError([pos.issue((), shape)])
    return data, pos
