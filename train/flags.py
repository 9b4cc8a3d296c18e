"""CLI flags generated from a config dataclass, as ``service/cli.py`` generates ``serve``'s from ``Settings``.

The dataclass is the one place a knob is named, typed, defaulted and documented, so a flag cannot
drift from the field it sets: ``--`` plus the field name with dashes, ``list`` fields take several
values, and a field with a ``parse`` function (tag maps) is typed as one string and parsed when the
config is built, so a bad value fails like any other invalid setting.

Torch-free on purpose: ``bioner serve`` builds the training subcommands' parsers too.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Config = TypeVar("Config", bound="DataclassInstance")


def flag(
    help: str | None = None, *, choices: Sequence[str] | None = None, parse: Callable[[str | None], Any] | None = None
) -> dict[str, Any]:
    """Field metadata: what ``--help`` says, the allowed values, and how a flag's string becomes the value."""
    return {"help": help, "choices": choices, "parse": parse}


def add_flags(parser: argparse.ArgumentParser, config: type[DataclassInstance]) -> None:
    """One flag per field of ``config``; fields without a default are required flags."""
    hints = get_type_hints(config)
    for f in fields(config):
        required = f.default is MISSING and f.default_factory is MISSING
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help")}
        kind = optional_of(hints[f.name])
        if f.metadata.get("choices"):
            kwargs["choices"] = list(f.metadata["choices"])
        if f.metadata.get("parse"):
            kwargs["default"] = None  # the parser's own empty value comes from parsing None
        elif get_origin(kind) is list:
            kwargs["nargs"] = "+" if required else "*"
            kwargs["default"] = None if required else f.default_factory()  # type: ignore[operator]
        elif kind is bool:
            kwargs["action"] = "store_true"  # a switch: `type=bool` would read "False" as true
            kwargs["default"] = f.default
        else:
            kwargs["default"] = None if required else f.default
            if kind is not str:
                kwargs["type"] = kind
        parser.add_argument("--" + f.name.replace("_", "-"), required=required, **kwargs)


def optional_of(hint: Any) -> Any:
    """``X`` for ``X | None`` (a flag whose absence means "derived from another"), else the hint itself."""
    if isinstance(hint, types.UnionType) or get_origin(hint) is Union:
        kinds = [a for a in get_args(hint) if a is not type(None)]
        if len(kinds) == 1:
            return kinds[0]
    return hint


def config_from_args(config: type[Config], args: argparse.Namespace) -> Config:
    """The dataclass from parsed flags (other attributes of ``args`` are ignored); raises ValueError."""
    values = {}
    for f in fields(config):
        parse = f.metadata.get("parse")
        values[f.name] = parse(getattr(args, f.name)) if parse else getattr(args, f.name)
    return config(**values)
