"""Issue title and body templates: `{repo}` placeholders, rendered in Jinja's sandbox.

A template is text with placeholders. `{name}` (single braces, a bare name) is the
documented form; it is rewritten to `{{ name }}` before Jinja parses the text, so Jinja's
own syntax works as well (`{{ repo }}`, `{% if details %}…{% endif %}`). Only a bare name
in single braces is a placeholder: other braces (JSON such as `{"a": 1}`, `{ x }`, `}}`)
are left as they are, and text inside `{{ }}`, `{% %}`, `{# #}` and `{% raw %}` blocks is
not rewritten.

The config is written by people who may not be trusted with code execution in the App, so:
- validation (at config parse time) allows only a small part of Jinja: the placeholders,
  literals, `if`/`else`, comparisons, `and`/`or`/`not`, `~` and a few string filters. Any
  other name, attribute or item access, a call, a loop or arithmetic is a config error;
- rendering uses `SandboxedEnvironment` (attribute access to internals is refused even if
  something got past validation) and caps the output's size.

No import from the rest of the App: the config models validate with it, and the
create-issue action renders with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "PLACEHOLDERS",
    "TemplateProblem",
    "check_template",
    "render_template",
    "to_jinja",
]

# The values a template can use, in the order the docs list them.
PLACEHOLDERS: tuple[str, ...] = ("repo", "policy", "message", "details", "dashboard_url")
# Rendered text longer than this is cut (GitHub's issue body limit is 65536 characters).
MAX_RENDERED = 60_000

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# `{name}` not part of `{{`/`}}`.
_SINGLE = re.compile(r"(?<!\{)\{(" + _NAME + r")\}(?!\})")
# Jinja constructs whose text is never rewritten.
_JINJA = re.compile(
    r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}"  # raw blocks: literal text
    r"|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}",
    re.DOTALL,
)
_FILTERS = frozenset({"upper", "lower", "title", "capitalize", "trim", "default", "d",
                      "truncate", "length", "wordcount"})
_ALLOWED = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const,
            nodes.If, nodes.CondExpr, nodes.Compare, nodes.Operand, nodes.And, nodes.Or,
            nodes.Not, nodes.Concat, nodes.Filter)


class TemplateProblem(ValueError):
    """The template is not acceptable; the message says why and on which of its lines."""


def to_jinja(text: str) -> str:
    """The template with every `{name}` rewritten to `{{ name }}` (outside Jinja tags)."""
    out: list[str] = []
    pos = 0
    for m in _JINJA.finditer(text):
        out.append(_SINGLE.sub(r"{{ \1 }}", text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_SINGLE.sub(r"{{ \1 }}", text[pos:]))
    return "".join(out)


def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                keep_trailing_newline=True)


_ENV = _env()


def _where(node: nodes.Node) -> str:
    line = getattr(node, "lineno", None)
    return f" on template line {line}" if line else ""


def _known() -> str:
    return ", ".join("{" + p + "}" for p in PLACEHOLDERS)


def _check_node(node: nodes.Node) -> None:
    if isinstance(node, nodes.Name):
        if node.name not in PLACEHOLDERS:
            raise TemplateProblem(f"unknown placeholder {{{node.name}}}{_where(node)} "
                                  f"(known: {_known()})")
        if node.ctx != "load":
            raise TemplateProblem(f"a template cannot assign to {{{node.name}}}{_where(node)}")
    elif isinstance(node, nodes.Filter):
        if node.name not in _FILTERS:
            raise TemplateProblem(f"filter {node.name!r}{_where(node)} is not allowed "
                                  f"(allowed: {', '.join(sorted(_FILTERS))})")
    elif isinstance(node, nodes.Getattr | nodes.Getitem):
        raise TemplateProblem(f"attribute and item access{_where(node)} is not allowed in "
                              f"a template; use the placeholders {_known()}")
    elif isinstance(node, nodes.Call):
        raise TemplateProblem(f"calling a function{_where(node)} is not allowed in a template")
    elif not isinstance(node, _ALLOWED):
        raise TemplateProblem(f"{type(node).__name__.lower()}{_where(node)} is not allowed in "
                              "a template: only placeholders, if/else, comparisons and a "
                              "few string filters are")
    for child in node.iter_child_nodes():
        _check_node(child)


def check_template(text: str) -> None:
    """Raise TemplateProblem when `text` has a syntax error, an unknown placeholder or
    anything beyond the allowed subset of Jinja."""
    try:
        tree = _ENV.parse(to_jinja(text))
    except TemplateSyntaxError as exc:
        line = f" on template line {exc.lineno}" if exc.lineno else ""
        raise TemplateProblem(f"template syntax error{line}: {exc.message}. To write "
                              "`{{`, `{%` or `{#` literally, put the text between "
                              "{% raw %} and {% endraw %}") from None
    _check_node(tree)


def render_template(text: str, values: Mapping[str, Any]) -> str:
    """Render a template (checked by check_template) with `values` for the placeholders.
    Raises TemplateProblem when it fails; nothing in it can run code."""
    check_template(text)
    try:
        out = _ENV.from_string(to_jinja(text)).render(
            {name: values.get(name, "") for name in PLACEHOLDERS})
    except TemplateError as exc:  # SecurityError, UndefinedError, ...
        raise TemplateProblem(f"the template could not be rendered: {exc}") from None
    return out[:MAX_RENDERED]
