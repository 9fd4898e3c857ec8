"""What every config model shares: the frozen base model, error construction, and the
wording of values in error messages."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Set as AbstractSet

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

__all__ = ["Model", "config_error", "describe_value", "max_len", "non_blank"]


def describe_value(value: object) -> str:
    """How a YAML value reads in an error message: its kind, and the value when short."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, _dt.date):
        return f"a date ({value.isoformat()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, AbstractSet):
        return "a set (!!set)"
    if isinstance(value, bytes):
        return "binary data (!!binary)"
    return f"a {type(value).__name__}"


def config_error(kind: str, message: str) -> PydanticCustomError:
    # No context: pydantic then keeps the message verbatim, braces and all.
    return PydanticCustomError(kind, message)


def non_blank(value: str, what: str) -> str:
    if not value.strip():
        raise config_error("blank", f"{what} must not be empty")
    if value != value.strip():
        raise config_error("whitespace", f"{what} must not start or end with whitespace")
    return value


def max_len(value: str, limit: int, what: str) -> str:
    if len(value) > limit:
        raise config_error("too_long",
                           f"{what} is {len(value)} characters long; the limit is {limit}")
    return value


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
