"""Read a YAML config file with line-precise errors: `file: line N: what is wrong`, defined once.

The policy and the taxonomy are both small YAML files that people edit by hand; both are parsed
here so that a syntax error, a duplicate key or a schema error names the line to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Lines = dict[tuple[Any, ...], int]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class YamlDoc:
    """A parsed document and the line of every key and list item (by path)."""

    data: Any
    lines: Lines

    def line(self, *path: Any) -> int:
        return line_for(path, self.lines)


def _line_map(node: yaml.Node, path: tuple[Any, ...], out: Lines, dupes: list[str]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                dupes.append(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in the same mapping")
            seen.add(key)
            _line_map(value_node, (*path, key), out, dupes)
            # A scalar's own line; for a nested block, the line of its key.
            anchor = value_node if isinstance(value_node, yaml.ScalarNode) else key_node
            out[(*path, key)] = anchor.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out, dupes)


def line_for(loc: tuple[Any, ...], lines: Lines) -> int:
    """The line of `loc`, or of its nearest parent that the document has."""
    path = tuple(loc)
    while path:
        # pydantic adds union-member tags (`float`, `literal[...]`) that are not in the document.
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get((), 1)


def read_yaml(text: str, source: str, error: type[Exception], what: str, expect: str = "") -> YamlDoc:
    """Parse `text`; raise `error("source: line N: ...")` on a syntax error, a bad character or a duplicate key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise error(f"{source}: line {line}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (control characters)
        line = text[: exc.position].count("\n") + 1
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise error(f"{source}: line {line}: character {char} is not allowed in YAML; remove it") from None
    except yaml.YAMLError as exc:
        raise error(f"{source}: line 1: cannot read the {what} as YAML: {exc}") from None
    if node is None or not isinstance(data, dict):
        raise error(f"{source}: line 1: the {what} must be a YAML mapping{expect}")
    lines: Lines = {}
    dupes: list[str] = []
    _line_map(node, (), lines, dupes)
    if dupes:
        raise error(f"{source}: {dupes[0]}; remove one of them")
    return YamlDoc(data=data, lines=lines)


def validate(model: type[M], doc: YamlDoc, source: str, error: type[Exception]) -> M:
    """`model.model_validate(doc.data)`, with the first schema error (by line) as `error`."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            errors.append((line_for(loc, doc.lines), f"{where}: {msg}"))
        errors.sort(key=lambda e: e[0])
        line, first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise error(f"{source}: line {line}: {first}{more}") from None
