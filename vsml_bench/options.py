"""Checking user-given options against the typed fields of a frozen dataclass."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from vsml_bench.errors import UserError


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Return `value` converted to type `tp`, or raise `UserError` naming `where`.

    Accepts what a command line or a YAML file produces: ints for floats, lists for
    tuples, strings for strings. Never converts between str and numbers silently.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(f"{where}: {value!r} is not a {_type_name(tp)}")
    if origin is Literal:
        if value in args:
            return value
        choices = ", ".join(repr(a) for a in args)
        raise UserError(f"{where}: {value!r} is not one of {choices}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: {value!r} is not a sequence ({_type_name(tp)})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise UserError(f"{where}: {value!r} needs {len(args)} entries")
        return tuple(coerce(v, a, where) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: {value!r} is not a bool (true or false)")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UserError(f"{where}: {value!r} is not an int")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{where}: {value!r} is not a float")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{where}: {value!r} is not a string")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise UserError(f"{where}: {value!r} is not a {_type_name(tp)}")


def build(cls: type, what: str, skip: tuple[str, ...] = (), **options: Any) -> Any:
    """Construct dataclass `cls` from user options, checking names and types.

    Args:
        cls: a dataclass.
        what: how to name it in messages, e.g. "learner 'vsml'".
        skip: fields that are filled by the caller, not by the user.
        options: the remaining fields' values; the caller's fields included.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    user_fields = sorted(n for n in fields if n not in skip)
    checked = {}
    for name, value in options.items():
        if name not in fields:
            known = ", ".join(user_fields) or "none"
            raise UserError(f"{what} has no option {name!r}; its options are: {known}")
        checked[name] = (
            value if name in skip else coerce(value, hints[name], f"{what} {name}")
        )
    try:
        return cls(**checked)
    except (TypeError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"{what}: {e}") from e
