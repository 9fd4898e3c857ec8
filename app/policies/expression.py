"""A custom rule without code: a JMESPath query over a JSON view of the repository.

The query runs on this view (only the `files` and `sources` the params name are in it):

    {
      "repository": {"full_name": str, "default_branch": str, "visibility": str,
                     "archived": bool, "fork": bool},
      "files": {
        "<path>": null                      # the file does not exist
                | {"documents": [...]}      # its YAML documents (all of them); a .json
                                            # file gives one document
                | {"error": "<why>"}        # not valid YAML/JSON, or over 1 MB
      },
      "<source name>": <the source's view as plain JSON: its dataclass fields, tuples as
                       lists> | {"unreadable": "<why GitHub would not give it>"}
    }

YAML dates become ISO 8601 strings and mapping keys strings. The rule holds when the
query's result is truthy in JMESPath's sense (not false, null, "", [] or {}; 0 is true),
or, with `expect`, when it equals `expect` (JSON equality: `true` is not `1`).

No network and no code: a JMESPath query reads the view and nothing else. The query is
compiled and its functions checked when the config is loaded.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import datetime as dt
import functools
import json
import re
import string
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar

import jmespath
from jmespath import exceptions as jexc
from jmespath.functions import Functions, signature
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter
from pydantic import AfterValidator, Field, field_validator
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
from app.sources import SOURCES, SourceUnreadable
from app.yamlsafe import MAX_DEPTH, describe_error, load_all, size_over

PLACEHOLDERS = ("repo", "value")
# Longest `{value}` rendered into a message.
VALUE_CHARS = 500
MAX_QUERY = 2000
_FUNCTIONS = Functions().FUNCTION_TABLE


class TooDeep(ValueError):
    """Data nests deeper than MAX_DEPTH (JSON has no bound of its own)."""


def describe_query_error(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "the query nests too deeply"
    if isinstance(exc, jexc.LexerError):
        what = str(exc.message)
    elif isinstance(exc, jexc.IncompleteExpressionError):
        what = "the query ends too soon"
    elif isinstance(exc, jexc.ParseError):
        what = str(exc.msg)
    else:
        return " ".join(str(exc).split())
    return f"{what} (at character {int(exc.lex_position) + 1})"


def _check_functions(node: Mapping[str, Any]) -> None:
    """Unknown functions and wrong argument counts, which jmespath finds only at search."""
    stack = [node]
    while stack:
        item = stack.pop()
        children = [c for c in item.get("children") or [] if isinstance(c, dict)]
        if item.get("type") == "function_expression":
            name = str(item.get("value"))
            if name not in _FUNCTIONS:
                raise ValueError(f"unknown JMESPath function {name}() (known: "
                                 f"{', '.join(sorted(_FUNCTIONS))})")
            signature = _FUNCTIONS[name]["signature"]
            variadic = any(arg.get("variadic") for arg in signature)
            if len(children) < len(signature) or \
                    (not variadic and len(children) != len(signature)):
                raise ValueError(f"{name}() takes {'at least ' if variadic else ''}"
                                 f"{len(signature)} argument(s), not {len(children)}")
        stack.extend(children)


# Nodes a query may visit over one repository's view: JMESPath has no loops, but a query
# that doubles its data at each step (`[@, @][]` over and over) grows it exponentially.
MAX_STEPS = 200_000


class TooCostly(jexc.JMESPathError):
    """The query did more work than MAX_STEPS allows."""


# Longest string a query may build (to_string, join): each call checks its result, so a
# query that doubles a string stops at twice this.
MAX_STRING = 100_000


def _bounded(text: str) -> str:
    if len(text) > MAX_STRING:
        raise TooCostly(f"the query builds a string over {MAX_STRING:,} characters")
    return text


class _BoundedFunctions(Functions):
    """JMESPath's functions, with the ones that build strings bounded."""

    @signature({"types": []})
    def _func_to_string(self, arg: Any) -> str:
        if isinstance(arg, str):
            return _bounded(arg)
        return _bounded(json.dumps(arg, separators=(",", ":"), default=str))

    @signature({"types": ["string"]}, {"types": ["array-string"]})
    def _func_join(self, separator: str, array: list[str]) -> str:
        if len(separator) * len(array) > MAX_STRING:
            raise TooCostly(f"the query builds a string over {MAX_STRING:,} characters")
        return _bounded(separator.join(array))


class _Budgeted(TreeInterpreter):
    """JMESPath's interpreter, stopped after MAX_STEPS visits: a rule from the config
    (or a config pull request's preview) cannot take a worker's CPU or memory."""

    def __init__(self) -> None:
        super().__init__(jmespath.Options(custom_functions=_BoundedFunctions()))
        self.left = MAX_STEPS

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise TooCostly(f"the query does too much work (over {MAX_STEPS:,} steps)")
        return super().visit(node, *args, **kwargs)


def search(query: str, data: Any) -> Any:
    """Evaluate a (compiled, checked) query within its budget."""
    return _Budgeted().visit(compiled(query).parsed, data)


@functools.lru_cache(maxsize=256)
def compiled(query: str) -> ParsedResult:
    """The query, compiled and checked; ValueError says what is wrong."""
    try:
        parsed = jmespath.compile(query)
    except (jexc.JMESPathError, RecursionError) as exc:
        raise ValueError(f"invalid JMESPath query: {describe_query_error(exc)}") from None
    _check_functions(parsed.parsed)
    return parsed


def plain(value: Any, depth: int = 0) -> Any:
    """`value` as JSON data: dataclasses and mappings to objects, sequences to arrays."""
    if depth > MAX_DEPTH:
        raise TooDeep(f"nests more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name), depth + 1)
                for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {_key(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, set | frozenset):  # YAML !!set: an order that does not churn
        return sorted((plain(v, depth + 1) for v in value), key=json.dumps)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):  # YAML !!binary
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    if isinstance(key, dt.date | dt.datetime):
        return key.isoformat()
    return str(key)


def truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, "", [] and {} are false; 0 is true."""
    return not (value is None or value is False or value in ("", [], {}))


def same(a: Any, b: Any) -> bool:
    """JSON equality: Python's `==` says True == 1 and 1 == 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _tokens(value: Any, depth: int = 0) -> Iterator[str]:
    if depth > 2 * MAX_DEPTH:
        yield "..."
    elif isinstance(value, list):
        yield "["
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _tokens(item, depth + 1)
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield (", " if i else "") + json.dumps(key) + ": "
            yield from _tokens(item, depth + 1)
        yield "}"
    else:
        yield json.dumps(value)


def render(value: Any, limit: int = VALUE_CHARS) -> str:
    """The value as Markdown inline code, at most `limit` characters: a string as itself,
    anything else as JSON. Streamed, so a huge result costs no more than `limit`."""
    if isinstance(value, str):
        text, cut = value[:limit + 1], len(value) > limit
    else:
        parts, size, cut = [], 0, False
        for token in _tokens(value):
            parts.append(token)
            size += len(token)
            if size > limit:
                cut = True
                break
        text = "".join(parts)
    text = " ".join(text.split()).replace("`", "'")
    return f"`{text[:limit]}...`" if cut or len(text) > limit else f"`{text}`"


def quote_query(query: str, limit: int = 200) -> str:
    """The query as inline code: its literals use backticks, so the fence is longer than
    any run of them inside (CommonMark)."""
    text = " ".join(query.split())
    text = text[:limit] + "..." if len(text) > limit else text
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def fill(message: str, values: Mapping[str, str]) -> str:
    """`message` with its placeholders (checked by the Params) replaced; `{{` is `{`."""
    out = []
    for literal, field, _, _ in string.Formatter().parse(message):
        out.append(literal)
        if field is not None:
            out.append(values[field])
    return "".join(out)


def load_file(path: str, text: str, size: int | None) -> dict[str, Any]:
    if size is not None:
        return {"error": f"{path} {size_over(size, MAX_FILE_BYTES)}, so it was not read"}
    try:
        docs = [json.loads(text)] if path.lower().endswith(".json") else load_all(text)
        return {"documents": plain(docs)}
    except YAMLError as exc:
        return {"error": describe_error(exc, path)}
    except json.JSONDecodeError as exc:
        return {"error": f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}"}
    except (TooDeep, RecursionError):
        return {"error": f"{path}: nests more than {MAX_DEPTH} levels deep"}


def _path(path: str) -> str:
    parts = path.split("/")
    if not path or path != path.strip() or len(path) > 300 \
            or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{path!r} is not a file path relative to the repository root "
                         "(like `catalog-info.yaml` or `.github/dependabot.yml`)")
    return path


def _source(name: str) -> str:
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r} (known: {', '.join(SOURCES)})")
    return name


class ExpressionParams(Params):
    query: str = Field(max_length=MAX_QUERY)
    message: str = Field(max_length=4000)
    files: tuple[Annotated[str, AfterValidator(_path)], ...] = Field(default=(), max_length=20)
    sources: tuple[Annotated[str, AfterValidator(_source)], ...] = Field(
        default=(), max_length=len(SOURCES))
    # Any JSON value; when absent, the query's result must be truthy.
    expect: Any = None

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query must not be empty")
        compiled(value)
        return value

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message must not be empty")
        try:
            fields = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"{exc} in the message; write `{{{{` and `}}}}` for literal "
                             "braces") from None
        for _, field, spec, conversion in fields:
            if field is not None and (field not in PLACEHOLDERS or spec or conversion):
                shown = "{" + field + (f"!{conversion}" if conversion else "") + \
                    (f":{spec}" if spec else "") + "}"
                raise ValueError(f"unknown placeholder {shown} in the message (known: "
                                 "{repo}, {value}; write `{{` and `}}` for literal braces)")
        return value

    @field_validator("expect")
    @classmethod
    def _expect(cls, value: Any) -> Any:
        try:
            return plain(value)
        except TooDeep as exc:
            raise ValueError(f"expect {exc}") from None

    @property
    def has_expect(self) -> bool:
        return "expect" in self.model_fields_set


class Expression(PolicyBase):
    type: ClassVar[str] = "expression"
    title: ClassVar[str] = "Custom rule holds"
    Params: ClassVar[builtins.type[Params]] = ExpressionParams
    # Every catalog-info.yaml component has spec.lifecycle production or experimental.
    example: ClassVar[dict[str, Any]] = {
        "files": ["catalog-info.yaml"],
        "query": "not_null(files.\"catalog-info.yaml\".documents, `[]`)"
                 "[?spec && !contains(['production', 'experimental'], spec.lifecycle)]"
                 ".{name: metadata.name, lifecycle: spec.lifecycle}",
        "expect": [],
        "message": "`catalog-info.yaml` in `{repo}` has entries whose `spec.lifecycle` is not "
                   "`production` or `experimental`: {value}. Set `spec.lifecycle` to one "
                   "of them.",
    }
    remedy: ClassVar[Remedy | None] = None

    def needs_for(self, params: Any) -> Needs:
        return Needs(files=frozenset(params.files), sources=frozenset(params.sources))

    def view(self, snapshot: RepoSnapshot, params: ExpressionParams) -> dict[str, Any]:
        out: dict[str, Any] = {
            "repository": {"full_name": snapshot.full_name,
                           "default_branch": snapshot.default_branch,
                           "visibility": snapshot.visibility, "archived": snapshot.archived,
                           "fork": snapshot.fork},
            "files": {},
        }
        for path in params.files:
            text = snapshot.file(path)
            out["files"][path] = None if text is None else \
                load_file(path, text, snapshot.too_large.get(path))
        for name in params.sources:
            try:
                out[name] = plain(SOURCES[name].of(snapshot))
            except SourceUnreadable as exc:
                out[name] = {"unreadable": str(exc)}
        return out

    def evaluate(self, snapshot: RepoSnapshot, params: Any = None) -> Result:
        if not isinstance(params, ExpressionParams):
            raise TypeError("the expression policy needs its params")
        details: dict[str, Any] = {"query": params.query[:500]}
        try:
            result = search(params.query, self.view(snapshot, params))
        except (jexc.JMESPathError, RecursionError) as exc:
            error = describe_query_error(exc)
            details["error"] = error[:500]
            text = fill(params.message, {"repo": snapshot.full_name, "value": "`null`"})
            # The data does not have the shape the rule assumes: a failure, with the reason.
            return Result(False, f"{text}\n\nThe query {quote_query(params.query)} failed on "
                          f"the data of `{snapshot.full_name}`: {render(error, 300)}.\n\n"
                          f"See {DOCS_URL}#{self.type}.", details)
        value = render(result)
        details["value"] = value[1:-1]
        holds = same(result, params.expect) if params.has_expect else truthy(result)
        if holds:
            return Result(True, "The custom rule holds.", details)
        text = fill(params.message, {"repo": snapshot.full_name, "value": value})
        return Result(False, f"{text}\n\nSee {DOCS_URL}#{self.type}.", details)


POLICY = Expression()
