"""Command-line flags generated from a dataclass, so each help text and default is written once, on the field.

Like transformers' HfArgumentParser, without importing transformers (`triage --help` stays fast).
A field with `help` metadata becomes a flag; other metadata keys: `flags` (option strings, default
`--field-name`), `metavar`, `choices`, `group` (fields sharing one form a required either-or group) and
`default_help` (words shown instead of a default that depends on the machine). A bool field is a
switch that sets the opposite of its default; a `list[X]` field is a repeatable flag; `X | None` takes X.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def cli_fields(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    """The fields of `cls` that are flags."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def default_text(f: dataclasses.Field[Any]) -> str | None:
    """The default as `--help` shows it, or None when there is none to show."""
    if "default_help" in f.metadata:
        return str(f.metadata["default_help"])
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    elif f.default is dataclasses.MISSING or f.default is None or isinstance(f.default, bool):
        return None
    else:
        value = f.default
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """Add one flag per field of `cls` that has help; values not given stay out of the namespace."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in cli_fields(cls):
        meta = f.metadata
        flags = tuple(meta.get("flags", ("--" + f.name.replace("_", "-"),)))
        shown = default_text(f)
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"] + (f" (default: {shown})" if shown else "")}
        kind = _unwrap_optional(hints[f.name])
        if kind is bool:
            kwargs["action"] = "store_false" if f.default is True else "store_true"
        elif typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            kwargs.update(action="append", type=item)
        else:
            kwargs["type"] = kind
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS
        target: Any = parser
        if "group" in meta:
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_mutually_exclusive_group(required=True)
            target = groups[meta["group"]]
        target.add_argument(*flags, **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """An instance of `cls` from the flags that were given; the dataclass supplies every other default."""
    given = vars(args)
    return cls(**{f.name: given[f.name] for f in cli_fields(cls) if f.name in given})


def _unwrap_optional(kind: Any) -> Any:
    """`X | None` -> X; any other type unchanged."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return inner
    return kind
