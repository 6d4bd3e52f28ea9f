"""YAML typed into (or uploaded to) the console: read safely, and asked where a field is written.

The policy editor and the persona import show each validation error beside the line it concerns, so the text is
composed into nodes first (they keep their line) and the document built from those nodes: one parse for both.

Anchors and aliases are refused: neither document needs them, and an alias lets a few lines stand for a
structure whose walk grows exponentially (the "billion laughs"), which a viewer's draft check must not cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from widget_server.edges.cli.common import yaml_problem
from widget_server.edges.http import MAX_BODY
from widget_server.errors import InvalidRequest

MAX_CHARS = MAX_BODY  # what the REST edge takes as a body


class InvalidYaml(InvalidRequest):
    code = "request.invalid_yaml"


@dataclass(frozen=True)
class YamlText:
    """A parsed YAML document and its node tree (None for an empty text)."""

    doc: Any
    root: yaml.Node | None

    def line_of(self, path: str) -> int | None:
        """The line (from 1) where the field at `path` (`patterns.0.regex`) is written, or the line of the
        nearest enclosing field that is (a missing field: the object it is missing from)."""
        node, line = self.root, None
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in path.split(".") if path and not path.startswith("(") else []:
            found = _child(node, part)
            if found is None:
                break
            key, node = found
            line = (key or node).start_mark.line + 1
        return line


def _child(node: yaml.Node, part: str) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return key, value
    elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
        return None, node.value[int(part)]
    return None


def _refuse_aliases(root: yaml.Node) -> None:
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            mark = node.start_mark
            raise InvalidYaml(f"anchors and aliases (&name, *name) are not supported (line {mark.line + 1})",
                              details={"line": mark.line + 1})
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            todo += [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value


def parse(text: str) -> YamlText:
    """The document of `text`; an `InvalidYaml` (400) says what is wrong and on which line."""
    if len(text) > MAX_CHARS:
        raise InvalidYaml(f"the YAML is longer than {MAX_CHARS} characters")
    try:
        loader = yaml.SafeLoader(text)  # it reads the text for unprintable characters at once
    except yaml.YAMLError as exc:
        raise _invalid(exc) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return YamlText(None, None)
        _refuse_aliases(root)
        return YamlText(loader.construct_document(root), root)
    except yaml.YAMLError as exc:
        raise _invalid(exc) from None
    except RecursionError:  # the composer recurses per level of nesting
        raise InvalidYaml("the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def _invalid(exc: yaml.YAMLError) -> InvalidYaml:
    mark = getattr(exc, "problem_mark", None)
    return InvalidYaml(f"this is not valid YAML: {yaml_problem(exc)}",
                       details={"line": mark.line + 1} if mark is not None else {})

class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a value repeated is written again: `parse` refuses aliases


def dump(doc: Any) -> str:
    """`doc` as block YAML, in its own key order, never with anchors."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
