"""YAML text turned into plain data that remembers the line of every key and list item.

The loader maps a pydantic error location back to a line with `Document.line_of`. Problems
PyYAML would pass over silently are reported too: duplicate keys, non-scalar keys, aliases that
contain themselves and documents that expand without bound.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

from router.config_issues import ConfigIssue, Loc, dotted


class _TooBig(Exception):
    pass


class Document:
    """YAML text turned into plain data, remembering the line of every key and list item."""

    MAX_NODES = 1_000_000  # guards against alias bombs

    def __init__(self, text: str) -> None:
        self.data: Any = None
        self.lines: dict[Loc, int] = {}
        self.issues: list[ConfigIssue] = []
        self._loader = yaml.SafeLoader(text)
        self._checked: set[int] = set()
        self._building: set[int] = set()
        self._nodes = 0
        try:
            root = self._loader.get_single_node()
            if root is not None:
                self.lines[()] = root.start_mark.line + 1
                self.data = self._build(root, ())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            context = exc.context or ""
            if context and exc.context_mark is not None and exc.context_mark is not mark:
                context += f" (line {exc.context_mark.line + 1})"
            message = ": ".join(p for p in (context, exc.problem) if p) or str(exc)
            what = "YAML error" if isinstance(exc, ConstructorError) else "YAML syntax error"
            self.issues.append(
                ConfigIssue(
                    line=mark.line + 1 if mark else None,
                    field="",
                    message=f"{what}: {message}",
                )
            )
            self.data = None
        except yaml.YAMLError as exc:
            self.issues.append(ConfigIssue(line=None, field="", message=f"YAML error: {exc}"))
            self.data = None
        except _TooBig:
            self.issues.append(
                ConfigIssue(
                    line=None,
                    field="",
                    message="the document expands to too many values (alias loop or bomb)",
                )
            )
            self.data = None
        finally:
            self._loader.dispose()

    def _issue(self, node: yaml.Node, path: Loc, message: str) -> None:
        self.issues.append(
            ConfigIssue(line=node.start_mark.line + 1, field=dotted(path), message=message)
        )

    def _build(self, node: yaml.Node, path: Loc) -> Any:
        self._nodes += 1
        if self._nodes > self.MAX_NODES:
            raise _TooBig
        if isinstance(node, yaml.ScalarNode):
            return self._loader.construct_object(node)
        if id(node) in self._building:
            self._issue(node, path, "an alias refers to the value that contains it")
            return None
        self._building.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != "tag:yaml.org,2002:seq":
                    self._issue(node, path, f"unsupported YAML tag {node.tag}")
                items = []
                for i, item in enumerate(node.value):
                    self.lines[(*path, i)] = item.start_mark.line + 1
                    items.append(self._build(item, (*path, i)))
                return items
            assert isinstance(node, yaml.MappingNode)
            if node.tag != "tag:yaml.org,2002:map":
                self._issue(node, path, f"unsupported YAML tag {node.tag}")
            if id(node) not in self._checked:
                self._checked.add(id(node))
                self._check_duplicates(node, path)
                self._loader.flatten_mapping(node)  # resolves "<<" merge keys
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self._issue(key_node, path, "keys must be plain values, not lists or maps")
                    continue
                # keys are kept as written: "1001" stays a string and "no" is not False
                key = key_node.value
                sub = (*path, key)
                self.lines[sub] = key_node.start_mark.line + 1
                result[key] = self._build(value_node, sub)
            return result
        finally:
            self._building.discard(id(node))

    def _check_duplicates(self, node: yaml.MappingNode, path: Loc) -> None:
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in first:
                self.issues.append(
                    ConfigIssue(
                        line=line,
                        field=dotted((*path, key_node.value)),
                        message=f"duplicate key (first given on line "
                        f"{first[key_node.value]}); only one value would be used",
                    )
                )
            else:
                first[key_node.value] = line

    def line_of(self, loc: Loc) -> int | None:
        """Line of the value at `loc`, or of its nearest enclosing key that is in the file."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None
