"""YAML from repositories, parsed within fixed bounds of size, nesting and expansion.

Anyone who can push to a repository chooses what its YAML holds; ruamel.yaml is pure
Python (some 20 µs a value) and recurses once per nesting level, and aliases let a small
file stand for an enormous one. So:
- text over MAX_BYTES is refused before the parser sees it;
- nesting deeper than MAX_DEPTH stops composition at that level, far from Python's
  recursion limit (a RecursionError from ruamel comes only after seconds of work);
- the composer counts every value as often as aliases repeat it, and stops once a
  file passes MAX_VALUES ("billion laughs"; `<<` merges count the same way), so the
  parser never does more than MAX_VALUES values' work either;
- a value the constructor cannot build (`2001-13-45`, `!!int x`) is a YAML error at its
  line, not a ValueError from deep inside the library.

Every failure is a `YAMLError`, a `MarkedYAMLError` with a line wherever one is known;
`describe_error` turns one into `file:line:column: what`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, StreamMark, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import Node
from ruamel.yaml.reader import ReaderError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "YAMLBoundsError",
    "describe_error",
    "describe_size",
    "load_all",
    "load_roundtrip",
    "size_over",
]

MAX_BYTES = 1024 * 1024
# Real configs and catalog entries nest under ten levels.
MAX_DEPTH = 64
# Values in a file once aliases are expanded. A real config or catalog entry has tens to
# hundreds; each value costs the parser some 25 µs and 600 bytes, so this bounds any file
# to about half a second and 12 MB.
MAX_VALUES = 20_000

_MB = 1024 * 1024
_T = TypeVar("_T")
# Longest value quoted back in an error message, and longest message.
_QUOTE = 40
_MESSAGE = 300


class YAMLBoundsError(MarkedYAMLError):
    """The text is too large, nests too deeply, or expands to too many values."""


def describe_size(size: int) -> str:
    """Bytes for people: '12 MB', '1.5 MB', '300 KB' (1 MB = 1024 KB, as GitHub counts)."""
    if size >= 10 * _MB:
        return f"{size / _MB:.0f} MB"
    if size >= _MB:
        return f"{size / _MB:.1f}".removesuffix(".0") + " MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


def size_over(size: int, limit: int) -> str:
    """'is 12 MB; the limit is 1 MB', exact in bytes where rounding would hide the excess."""
    over, cap = describe_size(size), describe_size(limit)
    if over == cap:
        over, cap = f"{size:,} bytes", f"{limit:,} bytes"
    return f"is {over}; the limit is {cap}"


def text_size(text: str) -> int:
    """The text's UTF-8 size. Far over the limit, its length in characters instead (a lower
    bound): encoding 10 MB only to say how large it is would be the allocation to avoid."""
    if text.isascii() or len(text) > MAX_BYTES:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def describe_error(exc: YAMLError, filename: str) -> str:
    """'catalog-info.yaml:3:5: found character '\\t' that cannot start any token (...)'."""
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = filename if mark is None else f"{filename}:{mark.line + 1}:{mark.column + 1}"
        what = str(exc.problem or exc.context or "cannot be parsed")
        if exc.problem and exc.context:
            what += f" ({exc.context})"
    else:
        where, what = filename, str(exc)
    what = " ".join(what.split())
    # Problems quote the text (an alias name, a tag); the message goes into issues.
    if len(what) > _MESSAGE:
        what = what[:_MESSAGE] + "..."
    return f"{where}: {what}"


def load_all(text: str) -> list[Any]:
    """Every document of `text`, as plain data (safe types only); raises YAMLError."""
    yaml = _yaml("safe")
    return _bounded(text, lambda: list(yaml.load_all(text)))


def load_roundtrip(text: str, *, allow_duplicate_keys: bool = False) -> tuple[Node | None, Any]:
    """The single document of `text`: its node tree (None when empty) and its round-trip
    data (CommentedMap and friends, with line numbers), from one parse; raises YAMLError."""
    yaml = _yaml("rt")
    yaml.allow_duplicate_keys = allow_duplicate_keys

    def parse() -> tuple[Node | None, Any]:
        node = yaml.compose(text)
        if node is None:
            return None, None
        return node, yaml.constructor.construct_document(node)

    return _bounded(text, parse)


# ----------------------------------------------------------------------------- internals
def _yaml(typ: str) -> YAML:
    # pure: the C parser's composer recurses in C, where no limit here applies.
    yaml = YAML(typ=typ, pure=True)
    yaml.Composer = _BoundedComposer
    yaml.Constructor = _BoundedSafe if typ == "safe" else _BoundedRoundTrip
    return yaml


def _bounded(text: str, parse: Callable[[], _T]) -> _T:
    size = text_size(text)
    if size > MAX_BYTES:
        raise YAMLBoundsError(problem=f"the file {size_over(size, MAX_BYTES)}")
    try:
        result = parse()
    except ReaderError as exc:
        raise _reader_error(exc, text) from None
    except RecursionError:
        # Not reached within MAX_DEPTH; kept so no input can end in an exception other
        # than a YAMLError, whatever stack the caller left.
        raise YAMLBoundsError(problem="the document is nested too deeply") from None
    return result


def _reader_error(exc: ReaderError, text: str) -> YAMLError:
    """The reader reports a character position only; give it a line and column."""
    position = exc.position if isinstance(exc.position, int) else 0
    line = text.count("\n", 0, position)
    column = position - (text.rfind("\n", 0, position) + 1)
    char = exc.character
    what = f"#x{char:04x}" if isinstance(char, int) else repr(char)
    return MarkedYAMLError(problem=f"unacceptable character {what}: {exc.reason}",
                           problem_mark=StreamMark(None, position, line, column))


class _BoundedComposer(Composer):
    """Composition that stops beyond MAX_DEPTH levels or MAX_VALUES expanded values."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader=loader)
        # Redefining an anchor is valid YAML; ruamel warns each time (a warning per
        # anchor of a crafted file, each formatting a snippet of the text).
        self.warn_double_anchors = False
        self._levels = 0
        self._count = 0
        # Expanded size of each finished node, by id(), for the aliases that repeat it.
        self._sizes: dict[int, int] = {}

    def compose_document(self) -> Any:
        # Anchors do not cross documents, and an earlier document's node ids may be reused.
        # The count goes on: MAX_VALUES bounds the whole file's work.
        self._sizes = {}
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)
            # An alias of an unfinished node (one containing the alias) counts once.
            self._add(self._sizes.get(id(node), 1), event)
            return node
        self._levels += 1
        if self._levels > MAX_DEPTH:
            raise YAMLBoundsError(problem=f"the document nests more than {MAX_DEPTH} levels "
                                          "deep", problem_mark=event.start_mark)
        before = self._count
        self._add(1, event)
        node = super().compose_node(parent, index)
        self._sizes[id(node)] = self._count - before
        self._levels -= 1
        return node

    def _add(self, values: int, event: Any) -> None:
        self._count += values
        if self._count > MAX_VALUES:
            raise YAMLBoundsError(
                problem=f"the file has more than {MAX_VALUES} values once aliases are "
                "expanded", problem_mark=event.start_mark)


def _construct(constructor: Any, node: Any, deep: bool) -> Any:
    """construct_object, with a scalar the constructor chokes on reported at its line."""
    try:
        return constructor.construct_object_unchecked(node, deep)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        value = str(node.value) if isinstance(node.value, str) else type(node.value).__name__
        if len(value) > _QUOTE:
            value = value[:_QUOTE] + "..."
        raise ConstructorError(
            problem=f"cannot read {value!r} as {_short_tag(node.tag)}: {exc}",
            problem_mark=node.start_mark) from None


def _short_tag(tag: Any) -> str:
    return str(tag).replace("tag:yaml.org,2002:", "!!")


class _BoundedSafe(SafeConstructor):
    def construct_object(self, node: Any, deep: bool = False) -> Any:
        return _construct(self, node, deep)

    def construct_object_unchecked(self, node: Any, deep: bool) -> Any:
        return super().construct_object(node, deep)


class _BoundedRoundTrip(RoundTripConstructor):
    def construct_object(self, node: Any, deep: bool = False) -> Any:
        return _construct(self, node, deep)

    def construct_object_unchecked(self, node: Any, deep: bool) -> Any:
        return super().construct_object(node, deep)
