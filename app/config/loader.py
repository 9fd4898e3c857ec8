"""Parse `config.yaml` text into an OrgConfig, or fail with every problem and its line.

Three passes, each collecting rather than stopping at the first problem:
1. the YAML parser (syntax; a syntax error is the only problem that ends parsing early),
2. a walk over the composed node tree (duplicate keys, unsupported tags),
3. pydantic validation of the plain data, whose error `loc` paths are mapped back onto the
   ruamel round-trip data to find the key and its line.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarstring import LiteralScalarString

from app.config.models import OrgConfig, PolicyConfig, describe_value
from app.policies import REGISTRY
from app.yamlsafe import MAX_VALUES, YAMLBoundsError, load_roundtrip

__all__ = ["MAX_VALUES", "ConfigError", "ConfigProblem", "parse_config"]

PathStep = str | int
_STD_TAG = "tag:yaml.org,2002:"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Validation errors about a key itself, reported even when its value had a problem already.
_KEY_ERRORS = frozenset({"extra_forbidden", "invalid_key"})


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the file. `line`/`column` are 1-based; None when unknown."""

    line: int | None
    column: int | None
    # Where in the document, e.g. `policies[1].action`; "" for the document as a whole.
    path: str
    message: str
    filename: str = "config.yaml"

    def __str__(self) -> str:
        where = self.filename if self.line is None else f"{self.filename}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The file is not a valid config; `problems` lists every problem, sorted by line."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = sorted(
            problems, key=lambda p: (p.line or 0, p.column or 0)
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[ConfigProblem]]]:
        return (ConfigError, (self.problems,))


def format_path(steps: Iterable[PathStep]) -> str:
    """('policies', 1, 'action') → 'policies[1].action'."""
    out = ""
    for step in steps:
        if isinstance(step, int) and not isinstance(step, bool):
            out += f"[{step}]"
        elif isinstance(step, str) and _PLAIN_KEY.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f"[{str(step)!r}]"
    return out


def parse_config(text: str, filename: str = "config.yaml") -> OrgConfig:
    """Parse and validate `text`; raise ConfigError naming every problem and its line."""
    return _Parser(text, filename).parse()


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.problems: list[ConfigProblem] = []
        # Paths already reported by the walks; validation errors at or below them are noise.
        self.reported: list[tuple[PathStep, ...]] = []
        self.data: Any = None
        self.budget = MAX_VALUES

    # -- reporting --------------------------------------------------------------------------

    def add(
        self,
        line0: int | None,
        col0: int | None,
        path: Sequence[PathStep],
        message: str,
        *,
        claim: bool = False,
    ) -> None:
        self.problems.append(
            ConfigProblem(
                line=None if line0 is None else line0 + 1,
                column=None if col0 is None else col0 + 1,
                path=format_path(path),
                message=message,
                filename=self.filename,
            )
        )
        if claim:
            self.reported.append(tuple(path))

    def _claimed(self, path: Sequence[PathStep]) -> bool:
        return any(tuple(path[: len(p)]) == p for p in self.reported)

    def fail(self) -> ConfigError:
        return ConfigError(self.problems)

    # -- the passes -------------------------------------------------------------------------

    def parse(self) -> OrgConfig:
        try:
            # Size, nesting and alias expansion are bounded there (app/yamlsafe.py).
            # Duplicates are found on the node tree (all of them, with paths); let them pass.
            node, data = load_roundtrip(self.text, allow_duplicate_keys=True)
        except YAMLBoundsError as exc:
            mark = exc.problem_mark
            self.add(None if mark is None else mark.line, None if mark is None else mark.column,
                     (), str(exc.problem))
            raise self.fail() from None
        except MarkedYAMLError as exc:
            self._syntax(exc)
            raise self.fail() from None
        except YAMLError as exc:
            self.add(None, None, (), f"invalid YAML: {' '.join(str(exc).split())}")
            raise self.fail() from None

        if node is None or data is None:
            self.add(
                None if node is None else node.start_mark.line,
                None,
                (),
                "the file is empty; expected a mapping with 'policies' "
                "(and optionally 'access_control')",
            )
            raise self.fail()
        if not isinstance(data, CommentedMap):
            self.add(
                node.start_mark.line,
                node.start_mark.column,
                (),
                "the top level must be a mapping with 'policies' (and optionally "
                f"'access_control'), got {describe_value(_kind_sample(data))}",
            )
            raise self.fail()

        self.data = data
        try:
            self._walk_nodes(node, (), set())
            plain = self._plain(data, ())
        except RecursionError:
            self.problems = []
            self.add(None, None, (), "invalid YAML: the document is nested too deeply")
            raise self.fail() from None
        if self.budget < 0:
            raise self.fail()
        self._check_empty_sections(data)
        self._check_duplicate_names(data)

        try:
            config = OrgConfig.model_validate(plain)
        except ValidationError as exc:
            self._validation(exc, data)
            raise self.fail() from None
        if self.problems:
            raise self.fail()
        return config

    def _syntax(self, exc: MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        context_mark = exc.context_mark
        if exc.context == "expected a single document in the stream":
            message = "the file holds more than one YAML document; a config is a single document"
        else:
            message = "invalid YAML"
            if mark is not None:
                message += f" at column {mark.column + 1}"
            message += f": {exc.problem or exc.context or 'cannot parse'}"
            if exc.problem and exc.context:
                message += f" ({exc.context}"
                if context_mark is not None and context_mark is not mark:
                    message += (
                        f" that starts at line {context_mark.line + 1}, "
                        f"column {context_mark.column + 1}"
                    )
                message += ")"
        self.add(
            None if mark is None else mark.line,
            None if mark is None else mark.column,
            (),
            message,
        )

    def _walk_nodes(
        self,
        node: Node,
        path: tuple[PathStep, ...],
        seen: set[int],
        ancestors: frozenset[int] = frozenset(),
    ) -> None:
        """Duplicate keys, unsupported tags and self-containing aliases, on the node tree."""
        if id(node) in ancestors:
            # ruamel would construct this as null, silently.
            self.add(
                node.start_mark.line,
                node.start_mark.column,
                path,
                "an alias refers to a mapping or list that contains it",
                claim=True,
            )
            return
        if id(node) in seen:  # an alias: already walked where its anchor is
            return
        seen.add(id(node))
        ancestors = ancestors | {id(node)}
        if isinstance(node, MappingNode):
            if not _standard_tag(node):
                self._bad_tag(node, path)
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    self.add(
                        key_node.start_mark.line,
                        key_node.start_mark.column,
                        path,
                        "a key must be a plain string, not a list or mapping",
                    )
                    continue
                if key_node.tag == _STD_TAG + "merge":
                    self._walk_nodes(value_node, path, seen, ancestors)
                    continue
                key = str(key_node.value)
                ident = (str(key_node.tag), key)
                if ident in first:
                    self.add(
                        key_node.start_mark.line,
                        key_node.start_mark.column,
                        (*path, key),
                        f"duplicate key {key!r} (first given at line {first[ident] + 1})",
                    )
                else:
                    first[ident] = key_node.start_mark.line
                self._walk_nodes(value_node, (*path, key), seen, ancestors)
        elif isinstance(node, SequenceNode):
            if not _standard_tag(node):
                self._bad_tag(node, path)
            for index, item in enumerate(node.value):
                self._walk_nodes(item, (*path, index), seen, ancestors)
        elif isinstance(node, ScalarNode) and not _standard_tag(node):
            self._bad_tag(node, path)

    def _bad_tag(self, node: Node, path: tuple[PathStep, ...]) -> None:
        self.add(
            node.start_mark.line,
            node.start_mark.column,
            path,
            f"unsupported YAML tag {node.tag!s}; remove it",
            claim=True,
        )

    def _plain(self, value: Any, path: tuple[PathStep, ...]) -> Any:
        """ruamel round-trip data → plain dicts, lists and scalars for pydantic."""
        self.budget -= 1
        if self.budget == -1:
            self.add(
                None,
                None,
                (),
                f"the document has more than {MAX_VALUES} values once aliases are expanded",
            )
        if self.budget < 0:
            return None
        if isinstance(value, dict):
            # Complex keys (`? [a, b]`) were reported by the node walk. Self-containing
            # aliases were too, and ruamel constructs them as null, so this terminates.
            return {
                k: self._plain(v, (*path, k))
                for k, v in value.items()
                if not isinstance(k, tuple | list | dict)
            }
        if isinstance(value, list):
            return [self._plain(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, TaggedScalar):
            # `!!str 5` keeps its tag in round-trip mode; other tags were reported already.
            return str(value.value)
        if value is None or isinstance(value, _dt.date):
            return value
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, str):
            return str(value)
        # !!set, !!binary and the like: nothing in the config takes them.
        if not self._claimed(path):
            line, col = _position_in(self.data, path)
            self.add(
                line, col, path, f"unsupported YAML value ({describe_value(value)})", claim=True
            )
        return None

    def _check_empty_sections(self, data: CommentedMap) -> None:
        """`issue_details:` with nothing under it is a mistake, not a request for defaults."""
        sections: list[tuple[CommentedMap, tuple[PathStep, ...], str]] = []
        for key in ("access_control", "defaults"):
            if key in data:
                sections.append((data, (), key))
        policies = data.get("policies")
        if isinstance(policies, list):
            for index, policy in enumerate(policies):
                if isinstance(policy, CommentedMap):
                    for key in ("issue_details", "pr_comment_details", "block_prs_details",
                                "fix_details"):
                        if key in policy:
                            sections.append((policy, ("policies", index), key))
        for mapping, path, key in sections:
            if mapping[key] is None:
                line, col = _key_position(mapping, key)
                self.add(
                    line,
                    col,
                    (*path, key),
                    "is empty; give its keys or remove it",
                    claim=True,
                )

    def _check_duplicate_names(self, data: CommentedMap) -> None:
        policies = data.get("policies")
        if not isinstance(policies, list):
            return
        first: dict[str, int] = {}
        seen: set[int] = set()
        for index, policy in enumerate(policies):
            if not isinstance(policy, CommentedMap):
                continue
            name = policy.get("name")
            if not isinstance(name, str):
                continue
            line, col = _key_position(policy, "name")
            if id(policy) in seen:
                # ruamel gives an alias the anchor's position, so the line is the original's.
                self.add(
                    line,
                    col,
                    ("policies", index, "name"),
                    f"duplicate policy name {name!r}: this item repeats an earlier policy "
                    "through a YAML alias",
                )
                continue
            seen.add(id(policy))
            if name in first:
                where = "" if first[name] < 0 else f" at line {first[name] + 1}"
                self.add(
                    line,
                    col,
                    ("policies", index, "name"),
                    f"duplicate policy name {name!r} (first used{where}): names identify "
                    "violations, so each policy needs its own",
                )
            else:
                first[name] = -1 if line is None else line

    def _validation(self, exc: ValidationError, data: CommentedMap) -> None:
        for err in exc.errors(include_url=False):
            kind = str(err["type"])
            loc: tuple[PathStep, ...] = tuple(err["loc"])
            if kind == "duplicate_policy_name":
                continue  # reported with its line by _check_duplicate_names
            if kind not in _KEY_ERRORS and self._claimed(loc):
                continue
            found, line, col = _locate(data, loc)
            message = _message(kind, loc, err, data)
            if kind == "template" and line is not None and found == loc:
                line = _template_line(data, loc, line, message)
            self.add(line, col, found, message)


def _standard_tag(node: Node) -> bool:
    return str(node.tag or _STD_TAG).startswith(_STD_TAG)


# -- locating paths in the round-trip data -------------------------------------------------


def _position(value: Any) -> tuple[int | None, int | None]:
    lc = getattr(value, "lc", None)
    if lc is None:
        return None, None
    return int(lc.line), int(lc.col)


def _key_position(mapping: CommentedMap, key: Any) -> tuple[int | None, int | None]:
    # Keys that came in through a `<<:` merge have no position of their own.
    if key in mapping.lc.data:
        line, col = mapping.lc.key(key)
        return int(line), int(col)
    return _position(mapping)


def _locate(
    root: Any, loc: Sequence[PathStep]
) -> tuple[tuple[PathStep, ...], int | None, int | None]:
    """Follow `loc` as far as the YAML goes: (the path found, its line, its column), 0-based.

    A missing key stops at its mapping; an action given as one string stops at `action`.
    """
    found: list[PathStep] = []
    line, col = _position(root)
    node = root
    for step in loc:
        if isinstance(node, CommentedMap) and step in node:
            line, col = _key_position(node, step)
        elif (
            isinstance(node, CommentedSeq)
            and isinstance(step, int)
            and not isinstance(step, bool)
            and 0 <= step < len(node)
        ):
            item_line, item_col = node.lc.item(step)
            line, col = int(item_line), int(item_col)
        else:
            break
        found.append(step)
        node = node[step]
    return tuple(found), line, col


_TEMPLATE_LINE = re.compile(r"on template line (\d+)")


def _template_line(root: Any, loc: Sequence[PathStep], key_line: int, message: str) -> int:
    """The file's line of a template problem: in a literal block (`body: |`) the template's
    lines are the file's, from the line after the key; elsewhere the key's line."""
    value = root
    for step in loc:
        value = value[step]
    found = _TEMPLATE_LINE.search(message)
    if found is None or not isinstance(value, LiteralScalarString):
        return key_line
    return key_line + int(found.group(1))


def _position_in(root: Any, path: Sequence[PathStep]) -> tuple[int | None, int | None]:
    _, line, col = _locate(root, path)
    return line, col


def _kind_sample(data: Any) -> Any:
    if isinstance(data, list):
        return []
    if isinstance(data, dict):
        return {}
    if isinstance(data, TaggedScalar):
        return str(data.value)
    return data


# -- turning pydantic errors into messages -------------------------------------------------


def _model_at(loc: Sequence[PathStep], root: Any = None) -> type[BaseModel] | None:
    """The model whose fields the mapping at `loc` holds (OrgConfig at the root). A
    policy's `params` holds its type's parameters (found through `root`, the data)."""
    model: type[BaseModel] | None = OrgConfig
    node = root
    for step in loc:
        if model is None:
            return None
        parent = node
        try:
            node = node[step] if node is not None else None
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(step, int):
            continue
        if model is PolicyConfig and step == "params":
            kind = parent.get("type") if isinstance(parent, dict) else None
            policy = REGISTRY.get(kind) if isinstance(kind, str) else None
            model = policy.Params if policy is not None else None
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == step), None)
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, tuple, typing.Annotated):
        for arg in typing.get_args(annotation):
            inner = _inner_model(arg)
            if inner is not None:
                return inner
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _unknown_key(key: PathStep, parent: Sequence[PathStep], root: Any = None) -> str:
    model = _model_at(parent, root)
    if model is None:
        return f"unknown key {key!r}"
    valid = _keys(model)
    if not valid:
        return f"unknown key {key!r} (this takes no keys: the policy type has no parameters)"
    if isinstance(key, str):
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        if close:
            return f"unknown key {key!r} (did you mean {close[0]!r}?)"
        # A key from a nested section written one level too high.
        for name, field in model.model_fields.items():
            inner = _inner_model(field.annotation)
            if (
                inner is not None
                and typing.get_origin(field.annotation) is not tuple
                and key in _keys(inner)
            ):
                return f"unknown key {key!r} (it belongs under {field.alias or name!r})"
    return f"unknown key {key!r} (valid keys: {', '.join(sorted(valid))})"


def _message(kind: str, loc: tuple[PathStep, ...], err: Any, root: Any = None) -> str:
    value = err.get("input")
    got = describe_value(value)
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind in _KEY_ERRORS:
        return _unknown_key(loc[-1], loc[:-1], root)
    if kind == "string_type":
        hint = "" if value is None or isinstance(value, dict | list) else "; quote it"
        return f"expected a string, got {got}{hint}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {got}"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {got}"
    msg = str(err.get("msg", kind))
    return msg.removeprefix("Value error, ")
