"""A file on the default branch matches a regular expression, or holds a value (found by a
JMESPath expression over its YAML or JSON) that is as required."""

from __future__ import annotations

import builtins
import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import jmespath
import jmespath.exceptions
import jmespath.functions
import re2
from pydantic import Field, field_validator, model_validator
from ruamel.yaml.error import YAMLError

from app.policies.base import (
    DOCS_URL,
    MAX_FILE_BYTES,
    Needs,
    Params,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
)
from app.policies.base import inline_code as code
from app.policies.file_exists import MAX_LISTED, relative_path
from app.yamlsafe import describe_error, load_all, size_over

TYPE = "file_contains"
# Longest value (as JSON) or error quoted back into a message.
MAX_SHOWN = 80
MAX_REASON = 200


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        # Keys of mixed types cannot be sorted; anything else too odd to quote.
        text = f"a {type(value).__name__}"
    return code(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…")


def _short(reason: str) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + "…"


# ------------------------------------------------------------------------- compiling
def compile_pattern(pattern: str, multiline: bool) -> Any:
    """The RE2 regexp (cached by re2 itself); raises re2.error."""
    options = re2.Options()
    # A bad pattern is the config author's to see, in the config error, not on stderr.
    options.log_errors = False
    return re2.compile(("(?m)" if multiline else "") + pattern, options)


def _check_functions(tree: Mapping[str, Any]) -> None:
    """jmespath finds unknown functions and wrong argument counts only when it evaluates:
    find them in the parsed tree, so they are config errors instead."""
    table = jmespath.functions.Functions.FUNCTION_TABLE
    stack: list[Mapping[str, Any]] = [tree]
    while stack:
        node = stack.pop()
        if node.get("type") == "function_expression":
            name, args = str(node.get("value")), len(node.get("children") or ())
            if name not in table:
                raise ValueError(f"unknown JMESPath function {name}()")
            signature = table[name]["signature"]
            variadic = bool(signature) and bool(signature[-1].get("variadic"))
            if args < len(signature) or (args > len(signature) and not variadic):
                raise ValueError(f"JMESPath function {name}() takes "
                                 f"{'at least ' if variadic else ''}{len(signature)} "
                                 f"argument(s), got {args}")
        stack.extend(c for c in node.get("children") or () if isinstance(c, dict))


def compile_expression(expression: str) -> Any:
    """The compiled JMESPath expression; raises ValueError with a one-line reason."""
    if not expression.strip():
        raise ValueError("the JMESPath expression must not be empty")
    try:
        compiled = jmespath.compile(expression)
    except jmespath.exceptions.LexerError as exc:
        raise ValueError(f"invalid JMESPath expression {expression!r}: {exc.message} at "
                         f"position {exc.lexer_position}") from None
    except jmespath.exceptions.ParseError as exc:
        raise ValueError(f"invalid JMESPath expression {expression!r}: {exc.msg} at "
                         f"position {exc.lex_position}") from None
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {expression!r}: "
                         f"{_short(str(exc))}") from None
    _check_functions(compiled.parsed)
    return compiled


def _json_value(value: Any, key: str) -> Any:
    """A JSON value from the config; a YAML date there is the text written."""
    if isinstance(value, _dt.date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v, key) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v, key) for k, v in value.items()}
    raise ValueError(f"{key} must be a JSON value (a string, number, boolean, null, list "
                     f"or mapping with string keys), got a {type(value).__name__}")


# ------------------------------------------------------------------------- comparing
def _same(found: Any, wanted: Any) -> bool:
    """JSON equality: `true` is not `1`, and a YAML date equals its text."""
    if isinstance(found, _dt.date):
        found = found.isoformat()
    if isinstance(found, bool) or isinstance(wanted, bool):
        return isinstance(found, bool) and isinstance(wanted, bool) and found == wanted
    if isinstance(wanted, int | float):
        return isinstance(found, int | float) and found == wanted
    if isinstance(wanted, list):
        return (isinstance(found, list | tuple) and len(found) == len(wanted)
                and all(_same(f, w) for f, w in zip(found, wanted, strict=True)))
    if isinstance(wanted, dict):
        return (isinstance(found, dict) and found.keys() == wanted.keys()
                and all(_same(found[k], w) for k, w in wanted.items()))
    return type(found) is type(wanted) and found == wanted


def _non_empty(found: Any) -> bool:
    # `false` and `0` are values someone set; null, blank text and empty lists are not.
    if found is None:
        return False
    if isinstance(found, str):
        return bool(found.strip())
    if isinstance(found, list | tuple | dict | set):
        return bool(found)
    return True


class FileContainsParams(Params):
    path: str
    # A regular expression in RE2 syntax, searched for anywhere in the text.
    pattern: str | None = None
    # `^` and `$` match at every line, not only at the start and end of the file.
    multiline: bool = False
    # A JMESPath expression over the parsed YAML (every document) or JSON.
    yaml_path: str | None = None
    json_path: str | None = None
    # What the expression must give (set or not: `equals: null` asks for null).
    equals: Any = None
    one_of: tuple[Any, ...] | None = Field(default=None, min_length=1)
    non_empty: bool | None = None
    # What a missing file means.
    missing: Literal["fail", "pass"] = "fail"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return relative_path(value)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value:
            raise ValueError("the pattern must not be empty (it would match any file)")
        try:
            compile_pattern(value, False)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else "cannot be compiled"
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise ValueError(f"invalid RE2 pattern {value!r}: {_short(str(reason))} (RE2 has "
                             "no look-around or backreferences)") from None
        return value

    @field_validator("yaml_path", "json_path")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is not None:
            compile_expression(value)
        return value

    @field_validator("equals")
    @classmethod
    def _equals(cls, value: Any) -> Any:
        return _json_value(value, "equals")

    @field_validator("one_of")
    @classmethod
    def _one_of(cls, value: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        return None if value is None else tuple(_json_value(v, "one_of") for v in value)

    @model_validator(mode="after")
    def _one_check(self) -> FileContainsParams:
        given = [k for k in ("pattern", "yaml_path", "json_path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `pattern`, `yaml_path` or `json_path`"
                             + (f" (got {', '.join(given)})" if given else ""))
        wanted = [k for k in ("equals", "one_of", "non_empty") if k in self.model_fields_set]
        if self.pattern is not None:
            if wanted:
                raise ValueError(f"{', '.join(wanted)} applies to `yaml_path` or `json_path`, "
                                 "not to `pattern`")
        elif "multiline" in self.model_fields_set:
            raise ValueError("multiline applies to `pattern` only")
        if len(wanted) > 1:
            raise ValueError(f"give only one of {', '.join(wanted)}")
        if self.non_empty is False:
            raise ValueError("non_empty: false checks nothing; use non_empty: true, equals "
                             "or one_of")
        return self

    @property
    def expression(self) -> str:
        return self.yaml_path or self.json_path or ""

    def requirement(self) -> str:
        """What the file must have, for messages: 'text matching the pattern `x`'."""
        if self.pattern is not None:
            lines = " (`^`/`$` at every line)" if self.multiline else ""
            return f"text matching the pattern {code(self.pattern)}{lines}"
        at = code(self.expression)
        if "equals" in self.model_fields_set:
            return f"{at} equal to {_shown(self.equals)}"
        if self.one_of is not None:
            return f"{at} equal to one of {', '.join(_shown(v) for v in self.one_of)}"
        return f"a non-empty value at {at}"

    def satisfied(self, found: Any) -> bool:
        if "equals" in self.model_fields_set:
            return _same(found, self.equals)
        if self.one_of is not None:
            return any(_same(found, v) for v in self.one_of)
        return _non_empty(found)


class FileContains(PolicyBase):
    type: ClassVar[str] = TYPE
    title: ClassVar[str] = "A file has the required content"
    Params: ClassVar[builtins.type[Params]] = FileContainsParams
    example: ClassVar[dict[str, Any]] = {
        "path": "catalog-info.yaml",
        "yaml_path": "spec.lifecycle",
        "one_of": ["production", "experimental", "deprecated"],
    }
    remedy: ClassVar[Remedy | None] = None

    def needs_for(self, params: FileContainsParams) -> Needs:
        return Needs(files=frozenset({params.path}))

    def evaluate(self, snapshot: RepoSnapshot, params: FileContainsParams | None = None
                 ) -> Result:
        if params is None:
            raise TypeError(f"{TYPE} needs its params: it has no defaults")
        path, repo = params.path, snapshot.full_name
        see = f"See {DOCS_URL}#{TYPE}."
        text = snapshot.file(path)
        if text is None:
            if params.missing == "pass":
                return Result(True, f"`{path}` does not exist; nothing to check.")
            return Result(False, f"`{repo}` has no `{path}` on its default branch "
                                 f"(`{snapshot.default_branch}`). Add it, with "
                                 f"{params.requirement()}. {see}",
                          {"path": path, "missing": True})
        size = snapshot.too_large.get(path)
        if size is not None:
            over = size_over(size, MAX_FILE_BYTES)
            return Result(False, f"`{path}` in `{repo}` {over}, so it was not read and its "
                                 f"content cannot be checked. Bring it under the limit. {see}",
                          {"path": path, "error": f"{path} {over}", "size": size})
        if params.pattern is not None:
            if compile_pattern(params.pattern, params.multiline).search(text) is not None:
                return Result(True, f"`{path}` matches the pattern.")
            return Result(False, f"`{path}` in `{repo}` has no {params.requirement()}. Edit "
                                 f"it on the default branch (`{snapshot.default_branch}`) so "
                                 f"that it does. {see}",
                          {"path": path, "pattern": params.pattern})
        return _judge_value(snapshot, params, text, see)


def _documents(params: FileContainsParams, text: str) -> list[tuple[int, Any]] | str:
    """(number, data) of each non-empty document, or why the file cannot be read."""
    if params.yaml_path is not None:
        try:
            # Bounded in size, nesting and alias expansion: any failure is a YAMLError.
            docs = load_all(text)
        except YAMLError as exc:
            return f"it is not valid YAML: {describe_error(exc, params.path)}"
        # Numbered as they stand in the file, empty ones included.
        return [(n, doc) for n, doc in enumerate(docs, 1) if doc is not None]
    try:
        # A byte order mark is not JSON, but editors write one.
        return [(1, json.loads(text.removeprefix("\ufeff")))]
    except json.JSONDecodeError as exc:
        return f"it is not valid JSON: {params.path}:{exc.lineno}:{exc.colno}: {exc.msg}"
    except RecursionError:
        return f"it is not valid JSON: {params.path}: it is nested too deeply"
    except ValueError as exc:  # e.g. an integer too long to convert
        return f"it is not valid JSON: {params.path}: {_short(str(exc))}"


def _judge_value(snapshot: RepoSnapshot, params: FileContainsParams, text: str, see: str
                 ) -> Result:
    path, repo, expression = params.path, snapshot.full_name, params.expression
    docs = _documents(params, text)
    if isinstance(docs, str):
        return Result(False, f"`{path}` in `{repo}` cannot be read: {docs}. Fix it so "
                             f"{code(expression)} can be checked. {see}",
                      {"path": path, "error": docs})
    if not docs:
        return Result(False, f"`{path}` in `{repo}` is empty; it must have "
                             f"{params.requirement()}. {see}",
                      {"path": path, "expression": expression})
    compiled = compile_expression(expression)
    failures: list[tuple[int, str]] = []
    for number, doc in docs:
        try:
            found = compiled.search(doc)
        except (jmespath.exceptions.JMESPathError, TypeError, ValueError,
                RecursionError) as exc:
            # The file's values are of a type the expression's functions do not take.
            failures.append((number, f"cannot be evaluated ({_short(str(exc))})"))
            continue
        if not params.satisfied(found):
            failures.append((number, "is missing or null" if found is None
                             else f"is {_shown(found)}"))
    if not failures:
        return Result(True, f"`{path}` has {params.requirement()}.")
    shown = failures[:MAX_LISTED]
    if len(docs) == 1:
        where = f"it {shown[0][1]}"
    else:
        where = "; ".join(f"in document {n} it {what}" for n, what in shown)
        if len(failures) > MAX_LISTED:
            where += f"; and {len(failures) - MAX_LISTED} more documents fail"
    return Result(
        False,
        f"`{path}` in `{repo}` must have {params.requirement()}, but {where}. Edit it on "
        f"the default branch (`{snapshot.default_branch}`) so that it does. {see}",
        {"path": path, "expression": expression,
         "failures": [{"document": n, "found": what} for n, what in shown]},
    )


POLICY = FileContains()
