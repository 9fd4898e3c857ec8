"""A small GraphQL engine for the subset of GitHub's schema the app queries.

It parses real GraphQL (operations, variables, aliases, arguments, named fragments, inline
fragments, comments), validates field names against a slice of GitHub's schema, executes,
and answers in GitHub's shapes: `{"data": ...}`, per-field `NOT_FOUND` errors with a path
next to partial data, validation errors without data.

Schema slice: `repository(owner:, name:)`, `rateLimit`, and on Repository the metadata
and settings fields, `repositoryTopics(first:)`, `defaultBranchRef { name target { oid } }`
and `object(expression: "REF:path")` resolving to Blob (`text byteSize isBinary isTruncated
oid`), Tree (`entries { name path type mode oid size object }`) or Commit (`tree { oid }`,
git's own tree id, the one REST's git/trees serves).

What the App's data sources read, per repository: `ref(qualifiedName:)` and
`Ref.branchProtectionRule` (the classic rule that applies to the branch),
`collaborators(affiliation:, first:, after:)`, `codeowners(refName:) { errors { ... } }` and
`hasVulnerabilityAlertsEnabled`, computed as REST computes them (tests/fakegithub/repo_rules.py)
and refused as REST refuses them: a field the token's permissions do not cover is null with a
FORBIDDEN error at its path, next to the rest of the data.

Cost: GitHub charges per query the connections it may have to load (each connection's
requests: its parents' page sizes multiplied; the sum ÷ 100, rounded, at least 1). The
connections here are repositoryTopics and collaborators: a 100-repository batch reading
either costs 1 point. A connection without `first`/`last`, or asking more than 100, fails the
query.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from tests.fakegithub.state import (
    BranchProtection,
    FakeState,
    Repo,
    TreeEntry,
    User,
    git_trees,
    iso,
    node_id,
)

# GitHub cuts Blob.text at this many bytes and sets isTruncated (observed: 512,000 bytes;
# undocumented). FakeState.graphql_blob_text_limit overrides it.
BLOB_TEXT_LIMIT = 512_000


class GraphQLSyntaxError(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line, self.column = line, column


# ----------------------------------------------------------------------------- lexer
_TOKEN = re.compile(
    r"""
    (?P<ws>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<block>\"\"\"(?:\\\"\"\"|[^"]|"(?!""))*\"\"\")
  | (?P<string>"(?:\\.|[^"\\\n\r])*")
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$&()\:=@\[\]{|}])
  | (?P<number>-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}


@dataclass(frozen=True)
class Token:
    kind: str  # name / string / number / punct / spread / eof
    value: str
    line: int
    column: int


def _unescape(raw: str, line: int, column: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", raw[i + 2 : i + 6]):
            out.append(chr(int(raw[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise GraphQLSyntaxError(f"Bad escape sequence \\{nxt}", line, column)
    # \uD83D\uDE00 pairs come out as two surrogates; join them like GitHub does.
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        column = pos - line_start + 1
        if m is None:
            raise GraphQLSyntaxError(f"Unexpected character {source[pos]!r}", line, column)
        kind = m.lastgroup or ""
        text = m.group()
        if kind == "string":
            tokens.append(Token("string", _unescape(text[1:-1], line, column), line, column))
        elif kind == "block":
            tokens.append(Token("string", text[3:-3].replace('\\"""', '"""'), line, column))
        elif kind != "ws":
            tokens.append(Token(kind, text, line, column))
        newlines = text.count("\n")
        if newlines:
            line += newlines
            line_start = pos + text.rindex("\n") + 1
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens


# ----------------------------------------------------------------------------- AST
@dataclass
class Var:
    name: str


@dataclass
class Enum:
    name: str


@dataclass
class Field:
    name: str
    alias: str | None
    args: dict[str, Any]
    selections: list[Selection] | None
    line: int
    column: int

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class InlineFragment:
    type_condition: str | None
    selections: list[Selection]


@dataclass
class FragmentSpread:
    name: str
    line: int
    column: int


Selection = Field | InlineFragment | FragmentSpread


@dataclass
class VariableDef:
    name: str
    type: str  # e.g. "String!", "[String!]"
    default: Any = None


@dataclass
class Operation:
    kind: str  # query / mutation / subscription
    name: str | None
    variables: list[VariableDef]
    selections: list[Selection]


@dataclass
class Document:
    operations: list[Operation] = field(default_factory=list)
    fragments: dict[str, tuple[str, list[Selection]]] = field(default_factory=dict)


class Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, expected: str) -> GraphQLSyntaxError:
        t = self.tok
        seen = "end of file" if t.kind == "eof" else f"{t.value!r}"
        return GraphQLSyntaxError(f"Expected {expected}, actual: {seen}", t.line, t.column)

    def peek(self, value: str) -> bool:
        return self.tok.kind in ("punct", "spread", "name") and self.tok.value == value

    def expect(self, value: str) -> Token:
        if not self.peek(value):
            raise self.fail(repr(value))
        t = self.tok
        self.i += 1
        return t

    def name(self) -> str:
        if self.tok.kind != "name":
            raise self.fail("a name")
        t = self.tok
        self.i += 1
        return t.value

    def document(self) -> Document:
        doc = Document()
        while self.tok.kind != "eof":
            if self.peek("{"):
                doc.operations.append(Operation("query", None, [], self.selection_set()))
            elif self.peek("fragment"):
                self.i += 1
                name = self.name()
                self.expect("on")
                doc.fragments[name] = (self.name(), self.selection_set())
            elif self.tok.kind == "name" and self.tok.value in ("query", "mutation",
                                                                 "subscription"):
                kind = self.name()
                op_name = self.name() if self.tok.kind == "name" else None
                variables = self.variable_defs() if self.peek("(") else []
                self.directives()
                doc.operations.append(Operation(kind, op_name, variables,
                                                self.selection_set()))
            else:
                raise self.fail("a definition")
        return doc

    def variable_defs(self) -> list[VariableDef]:
        self.expect("(")
        out: list[VariableDef] = []
        while not self.peek(")"):
            self.expect("$")
            name = self.name()
            self.expect(":")
            type_ = self.type_ref()
            default = None
            if self.peek("="):
                self.i += 1
                default = self.value(const=True)
            out.append(VariableDef(name, type_, default))
        self.expect(")")
        return out

    def type_ref(self) -> str:
        if self.peek("["):
            self.i += 1
            inner = self.type_ref()
            self.expect("]")
            text = f"[{inner}]"
        else:
            text = self.name()
        if self.peek("!"):
            self.i += 1
            text += "!"
        return text

    def directives(self) -> None:
        while self.peek("@"):
            self.i += 1
            self.name()
            if self.peek("("):
                self.arguments()

    def selection_set(self) -> list[Selection]:
        self.expect("{")
        out: list[Selection] = []
        while not self.peek("}"):
            out.append(self.selection())
        self.expect("}")
        if not out:
            raise self.fail("a selection")
        return out

    def selection(self) -> Selection:
        if self.tok.kind == "spread":
            t = self.tok
            self.i += 1
            if self.peek("on"):
                self.i += 1
                cond = self.name()
                self.directives()
                return InlineFragment(cond, self.selection_set())
            if self.peek("{") or self.peek("@"):
                self.directives()
                return InlineFragment(None, self.selection_set())
            return FragmentSpread(self.name(), t.line, t.column)
        t = self.tok
        name = self.name()
        alias = None
        if self.peek(":"):
            self.i += 1
            alias, name = name, self.name()
        args = self.arguments() if self.peek("(") else {}
        self.directives()
        sub = self.selection_set() if self.peek("{") else None
        return Field(name, alias, args, sub, t.line, t.column)

    def arguments(self) -> dict[str, Any]:
        self.expect("(")
        out: dict[str, Any] = {}
        while not self.peek(")"):
            key = self.name()
            self.expect(":")
            out[key] = self.value()
        self.expect(")")
        return out

    def value(self, const: bool = False) -> Any:
        t = self.tok
        if t.kind == "punct" and t.value == "$" and not const:
            self.i += 1
            return Var(self.name())
        if t.kind == "string":
            self.i += 1
            return t.value
        if t.kind == "number":
            self.i += 1
            return float(t.value) if any(c in t.value for c in ".eE") else int(t.value)
        if t.kind == "name":
            self.i += 1
            return {"true": True, "false": False, "null": None}.get(t.value, Enum(t.value))
        if self.peek("["):
            self.i += 1
            items = []
            while not self.peek("]"):
                items.append(self.value(const))
            self.i += 1
            return items
        if self.peek("{"):
            self.i += 1
            obj: dict[str, Any] = {}
            while not self.peek("}"):
                key = self.name()
                self.expect(":")
                obj[key] = self.value(const)
            self.i += 1
            return obj
        raise self.fail("a value")


def parse(source: str) -> Document:
    return Parser(source).document()


# ----------------------------------------------------------------------------- schema
@dataclass
class Context:
    st: FakeState
    can_see: Callable[[Repo], bool]
    variables: Mapping[str, Any]
    rate: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)


class FieldError(Exception):
    """A field that fails with an error next to the other fields' data."""

    type = "INVALID_ARGUMENTS"
    extensions: dict[str, Any] | None = None


class NotFound(FieldError):
    type = "NOT_FOUND"


class InvalidCursor(FieldError):
    type = "INVALID_CURSOR_ARGUMENTS"


class Forbidden(FieldError):
    # GitHub's refusals carry extensions.saml_failure (false: not an SSO session problem).
    type = "FORBIDDEN"
    extensions = {"saml_failure": False}


class _NullBubble(Exception):
    """A non-null field came out null (its error recorded): GraphQL nulls the nearest
    nullable field above it instead."""


INTEGRATION_FORBIDDEN = "Resource not accessible by integration"
# What the caller's installation token grants: permission -> may it read? Set around each
# /graphql request by repo_rules.py (REST's own check); unset, only `metadata`, which every
# installation has.
GRANTS: ContextVar[Callable[[str], bool]] = ContextVar(
    "fakegithub_graphql_grants", default=lambda permission: permission == "metadata")


Resolver = Callable[[Any, dict[str, Any], Context], Any]
# type -> field -> (result type or None for a scalar, resolver)
SCHEMA: dict[str, dict[str, tuple[str | None, Resolver]]] = {}
# Abstract types and the concrete types they can be.
POSSIBLE: dict[str, set[str]] = {
    "GitObject": {"Blob", "Tree", "Commit"},
    "RepositoryOwner": {"Organization", "User"},
}


@dataclass
class GitObject:
    kind: str  # Blob / Tree / Commit
    repo: Repo
    oid: str
    text: str | None = None
    # Commit and Tree: the commit's files; Tree: its directory ("" is the root).
    files: Mapping[str, str] | None = None
    path: str = ""


@dataclass
class RefValue:
    repo: Repo
    name: str


def _resolve_expression(st: FakeState, repo: Repo, expression: str) -> GitObject | None:
    ref, sep, path = expression.partition(":")
    branch = repo.default_branch if ref in ("HEAD", "") else ref.removeprefix("refs/heads/")
    if branch not in repo.branches:
        branch = next((b for b, sha in repo.heads.items() if len(ref) >= 7
                       and sha.startswith(ref)), "")
    files = repo.branches.get(branch)
    head = repo.heads.get(branch, "0" * 40)
    if files is None:
        # Any other commit the repository has (an older head, a fork's pull request head).
        found = repo.commit(ref)
        if found is None:
            return None
        head, files = found
    if not sep:
        return GitObject("Commit", repo, head, files=files)
    path = path.strip("/")
    if path in files:
        data = files[path].encode()
        return GitObject("Blob", repo, hashlib.sha1(b"blob %d\0" % len(data) + data)
                         .hexdigest(), files[path])
    trees = git_trees(files)
    if path in trees:  # git's own tree id, the one REST's git/trees serves
        return GitObject("Tree", repo, trees[path].sha, files=files, path=path)
    return None


def _repository(_: Any, args: dict[str, Any], ctx: Context) -> Repo:
    owner, name = str(args.get("owner") or ""), str(args.get("name") or "")
    hidden = ctx.st.graphql_not_found.get(f"{owner}/{name}".lower(), 0)
    repo = ctx.st.find_repo(f"{owner}/{name}")
    if hidden > 0:
        ctx.st.graphql_not_found[f"{owner}/{name}".lower()] = hidden - 1
        repo = None
    if repo is None or not ctx.can_see(repo):
        raise NotFound(f"Could not resolve to a Repository with the name '{owner}/{name}'.")
    return repo


def _blob_text(o: GitObject, st: FakeState) -> tuple[str | None, bool]:
    assert o.text is not None
    if "\x00" in o.text:
        return None, False  # binary: no text
    data = o.text.encode()
    if len(data) <= st.graphql_blob_text_limit:
        return o.text, False
    return data[: st.graphql_blob_text_limit].decode("utf-8", errors="ignore"), True


def _empty(r: Repo) -> bool:
    # GitHub's isEmpty: no commit at all (a commit of an empty tree is not empty).
    return not r.heads


SCHEMA["Query"] = {
    "repository": ("Repository", _repository),
    "rateLimit": ("RateLimit", lambda _, a, ctx: ctx.rate),
}
SCHEMA["RateLimit"] = {k: (None, (lambda key: lambda o, a, c: o[key])(k))
                       for k in ("limit", "cost", "remaining", "resetAt", "used", "nodeCount")}
SCHEMA["Repository"] = {
    "id": (None, lambda r, a, c: node_id("Repository", r.id)),
    "databaseId": (None, lambda r, a, c: r.id),
    "name": (None, lambda r, a, c: r.name),
    "nameWithOwner": (None, lambda r, a, c: r.full_name),
    "owner": ("RepositoryOwner", lambda r, a, c: r.owner),
    "isArchived": (None, lambda r, a, c: r.archived),
    "isFork": (None, lambda r, a, c: r.fork),
    "isPrivate": (None, lambda r, a, c: r.private),
    "isDisabled": (None, lambda r, a, c: r.disabled),
    "isTemplate": (None, lambda r, a, c: r.is_template),
    "isEmpty": (None, lambda r, a, c: _empty(r)),
    "hasIssuesEnabled": (None, lambda r, a, c: r.has_issues),
    "visibility": (None, lambda r, a, c: r.visibility.upper()),
    "description": (None, lambda r, a, c: r.description),
    "url": (None, lambda r, a, c: f"{c.st.web_url}/{r.full_name}"),
    "createdAt": (None, lambda r, a, c: iso(r.created_at)),
    "updatedAt": (None, lambda r, a, c: iso(r.updated_at)),
    "pushedAt": (None, lambda r, a, c: iso(r.pushed_at)),
    # add_repo makes a first commit (unless empty=True), so the default branch exists even
    # without files; an empty repository has no branch, and GitHub answers null.
    "defaultBranchRef": ("Ref", lambda r, a, c: RefValue(r, r.default_branch)
                         if r.default_branch in r.heads else None),
    "object": ("GitObject", lambda r, a, c: _resolve_expression(
        c.st, r, str(a.get("expression") or ""))),
}
SCHEMA["RepositoryOwner"] = {
    "login": (None, lambda u, a, c: u.login),
    "id": (None, lambda u, a, c: node_id(u.type, u.id)),
}
SCHEMA["Ref"] = {
    "name": (None, lambda ref, a, c: ref.name),
    "prefix": (None, lambda ref, a, c: "refs/heads/"),
    "target": ("GitObject", lambda ref, a, c: GitObject(
        "Commit", ref.repo, ref.repo.heads.get(ref.name, "0" * 40))),
}
_GIT_OBJECT: dict[str, tuple[str | None, Resolver]] = {
    "oid": (None, lambda o, a, c: o.oid),
    "abbreviatedOid": (None, lambda o, a, c: o.oid[:7]),
    "id": (None, lambda o, a, c: node_id(o.kind, int(o.oid[:8], 16))),
}
SCHEMA["GitObject"] = dict(_GIT_OBJECT)
SCHEMA["Commit"] = dict(_GIT_OBJECT)
SCHEMA["Tree"] = dict(_GIT_OBJECT)
SCHEMA["Blob"] = {
    **_GIT_OBJECT,
    "byteSize": (None, lambda o, a, c: len((o.text or "").encode())),
    "isBinary": (None, lambda o, a, c: "\x00" in (o.text or "")),
    "text": (None, lambda o, a, c: _blob_text(o, c.st)[0]),
    "isTruncated": (None, lambda o, a, c: _blob_text(o, c.st)[1]),
}
SCHEMA["Organization"] = SCHEMA["User"] = dict(SCHEMA["RepositoryOwner"])

# Repository settings, as GitHub's schema names them (REST: has_wiki, allow_merge_commit, ...).
for _field, _attr in (("hasWikiEnabled", "has_wiki"), ("hasProjectsEnabled", "has_projects"),
                      ("deleteBranchOnMerge", "delete_branch_on_merge"),
                      ("mergeCommitAllowed", "allow_merge_commit"),
                      ("squashMergeAllowed", "allow_squash_merge"),
                      ("rebaseMergeAllowed", "allow_rebase_merge")):
    SCHEMA["Repository"][_field] = (None, (lambda attr: lambda r, a, c: getattr(r, attr))(_attr))


@dataclass
class Page:
    """One page of a connection: `items` from index `start` of the whole list."""

    items: list[Any]
    start: int
    total: int


def _cursor(index: int) -> str:
    return base64.b64encode(f"cursor:v2:{index}".encode()).decode()


def _cursor_index(cursor: Any) -> int:
    try:
        kind, version, index = base64.b64decode(str(cursor), validate=True).decode().split(":")
        if (kind, version) == ("cursor", "v2"):
            return int(index)
    except (ValueError, UnicodeDecodeError):
        pass
    raise InvalidCursor(f"`{cursor}` does not appear to be a valid cursor.")


def _paginate(items: list[Any], args: dict[str, Any]) -> Page:
    lo = _cursor_index(args["after"]) + 1 if args.get("after") is not None else 0
    hi = _cursor_index(args["before"]) if args.get("before") is not None else len(items)
    lo, hi = max(lo, 0), min(hi, len(items))
    if args.get("first") is not None:
        hi = min(hi, lo + int(args["first"]))
    if args.get("last") is not None:
        lo = max(lo, hi - int(args["last"]))
    return Page(items[lo:hi], lo, len(items))


SCHEMA["PageInfo"] = {
    "hasNextPage": (None, lambda p, a, c: p.start + len(p.items) < p.total),
    "hasPreviousPage": (None, lambda p, a, c: p.start > 0),
    "startCursor": (None, lambda p, a, c: _cursor(p.start) if p.items else None),
    "endCursor": (None, lambda p, a, c: _cursor(p.start + len(p.items) - 1)
                  if p.items else None),
}
SCHEMA["RepositoryTopicConnection"] = {
    "nodes": ("RepositoryTopic", lambda p, a, c: list(p.items)),
    "edges": ("RepositoryTopicEdge", lambda p, a, c: [(p.start + i, t)
                                                      for i, t in enumerate(p.items)]),
    "totalCount": (None, lambda p, a, c: p.total),
    "pageInfo": ("PageInfo", lambda p, a, c: p),
}
SCHEMA["RepositoryTopicEdge"] = {
    "cursor": (None, lambda e, a, c: _cursor(e[0])),
    "node": ("RepositoryTopic", lambda e, a, c: e[1]),
}


def _topic_id(kind: str, name: str) -> str:
    return node_id(kind, int(hashlib.sha1(name.encode()).hexdigest()[:8], 16))


# A RepositoryTopic is its topic's name here.
SCHEMA["RepositoryTopic"] = {
    "id": (None, lambda t, a, c: _topic_id("RepositoryTopic", t)),
    "topic": ("Topic", lambda t, a, c: t),
    "url": (None, lambda t, a, c: f"{c.st.web_url}/topics/{t}"),
    "resourcePath": (None, lambda t, a, c: f"/topics/{t}"),
}
SCHEMA["Topic"] = {
    "id": (None, lambda t, a, c: _topic_id("Topic", t)),
    "name": (None, lambda t, a, c: t),
}
SCHEMA["Repository"]["repositoryTopics"] = (
    "RepositoryTopicConnection", lambda r, a, c: _paginate(list(r.topics), a))


def _commit_tree(o: GitObject) -> GitObject:
    files = o.files
    if files is None:
        found = o.repo.commit(o.oid)
        files = found[1] if found is not None else {}
    return GitObject("Tree", o.repo, git_trees(files)[""].sha, files=files)


@dataclass
class Entry:
    """A TreeEntry: one entry of the Tree object `tree`."""

    tree: GitObject
    entry: TreeEntry


def _entries(o: GitObject) -> list[Entry]:
    tree = git_trees(o.files or {}).get(o.path)
    return [Entry(o, e) for e in tree.entries] if tree is not None else []


def _entry_object(e: Entry) -> GitObject:
    files = e.tree.files or {}
    if e.entry.type == "tree":
        return GitObject("Tree", e.tree.repo, e.entry.sha, files=files, path=e.entry.path)
    return GitObject("Blob", e.tree.repo, e.entry.sha, files[e.entry.path])


def _extension(e: Entry) -> str | None:
    stem, dot, ext = e.entry.name.rpartition(".")
    return f".{ext}" if e.entry.type == "blob" and dot and stem else None


SCHEMA["Commit"]["tree"] = ("Tree", lambda o, a, c: _commit_tree(o))
SCHEMA["Tree"]["entries"] = ("TreeEntry", lambda o, a, c: _entries(o))
SCHEMA["TreeEntry"] = {
    "name": (None, lambda e, a, c: e.entry.name),
    "path": (None, lambda e, a, c: e.entry.path),
    # Lowercase, as GitHub answers: "blob", "tree" (or "commit" for a submodule).
    "type": (None, lambda e, a, c: e.entry.type),
    "mode": (None, lambda e, a, c: int(e.entry.mode, 8)),
    "oid": (None, lambda e, a, c: e.entry.sha),
    "size": (None, lambda e, a, c: e.entry.size or 0),
    "extension": (None, lambda e, a, c: _extension(e)),
    "isGenerated": (None, lambda e, a, c: False),
    "object": ("GitObject", lambda e, a, c: _entry_object(e)),
}


# ----------------------------------------------------------------------------- data sources
def _rules() -> ModuleType:
    from tests.fakegithub import repo_rules  # it imports the server, which imports this module

    return repo_rules


def _need(permission: str) -> None:
    """REST's permission check (repo_rules._need), as GraphQL answers it: the field null with
    a FORBIDDEN error at its path, the rest of the query answered."""
    if not GRANTS.get()(permission):
        raise Forbidden(INTEGRATION_FORBIDDEN)


def _ref(r: Repo, args: dict[str, Any], ctx: Context) -> RefValue | None:
    # GitHub tries `refs/heads/main`, then the short name `main`; the fake has branches only.
    short = str(args.get("qualifiedName") or "").removeprefix("refs/heads/")
    return RefValue(r, short) if short in r.heads else None


def _branch_rule(ref: RefValue, args: dict[str, Any], ctx: Context) -> BranchProtection | None:
    # REST's GET .../branches/{branch}/protection needs `administration: read`, and GraphQL
    # refuses an installation without it too: branchProtectionRule null and a FORBIDDEN
    # "Resource not accessible by integration" error at its path (what tools reading it with
    # a GITHUB_TOKEN report). The fake refuses whether or not a rule applies.
    _need("administration")
    rule: BranchProtection | None = _rules().protection_for(ref.repo, ref.name)
    return rule


def _affiliation(value: Any) -> str:
    return str(value.name if isinstance(value, Enum) else value or "ALL").lower()


def _collaborators(r: Repo, args: dict[str, Any], ctx: Context) -> Page:
    # REST lists collaborators to any installation (`metadata`); GitHub refuses a viewer
    # without push access, which FakeState.graphql_collaborators_forbidden stands for.
    if r.full_name.lower() in ctx.st.graphql_collaborators_forbidden:
        raise Forbidden("Must have push access to view repository collaborators.")
    found: list[tuple[User, str]] = _rules().collaborators(
        ctx.st, r, _affiliation(args.get("affiliation")))
    return _paginate(found, args)


def _codeowners(r: Repo, args: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
    _need("contents")  # as REST's codeowners/errors
    ref = str(args.get("refName") or r.default_branch).removeprefix("refs/heads/")
    found: tuple[str, str] | None = _rules().codeowners_at(r, ref)
    if found is None:
        return None  # no such ref, or no CODEOWNERS in .github/, the root or docs/ there
    return {"errors": _rules().codeowners_errors(ctx.st, r, *found)}


def _vulnerability_alerts(r: Repo, args: dict[str, Any], ctx: Context) -> bool:
    # REST's GET .../vulnerability-alerts needs `administration: read`; so does this. The
    # field is Boolean!, so a refusal nulls the whole repository (GraphQL's non-null rule).
    _need("administration")
    return r.security.dependabot_alerts


SCHEMA["Repository"].update({
    "ref": ("Ref", _ref),
    "collaborators": ("RepositoryCollaboratorConnection", _collaborators),
    "codeowners": ("RepositoryCodeowners", _codeowners),
    "hasVulnerabilityAlertsEnabled": (None, _vulnerability_alerts),
})
SCHEMA["Ref"]["branchProtectionRule"] = ("BranchProtectionRule", _branch_rule)
# REST's BranchProtection, in GraphQL's names. A rule without reviews (or checks) required
# has no count (an empty list of contexts).
_RULE_FIELDS: dict[str, Callable[[BranchProtection], Any]] = {
    "id": lambda p: node_id("BranchProtectionRule", p.id),
    "databaseId": lambda p: p.id,
    "pattern": lambda p: p.pattern,
    "requiresApprovingReviews": lambda p: p.required_approving_review_count is not None,
    "requiredApprovingReviewCount": lambda p: p.required_approving_review_count,
    "dismissesStaleReviews": lambda p: p.dismiss_stale_reviews,
    "requiresCodeOwnerReviews": lambda p: p.require_code_owner_reviews,
    "requireLastPushApproval": lambda p: p.require_last_push_approval,
    "requiresStatusChecks": lambda p: p.required_status_checks is not None,
    "requiresStrictStatusChecks": lambda p: p.strict,
    "requiredStatusCheckContexts": lambda p: list(p.required_status_checks or []),
    "isAdminEnforced": lambda p: p.enforce_admins,
    "allowsForcePushes": lambda p: p.allow_force_pushes,
    "allowsDeletions": lambda p: p.allow_deletions,
    "blocksCreations": lambda p: p.block_creations,
    "requiresCommitSignatures": lambda p: p.required_signatures,
    "requiresConversationResolution": lambda p: p.required_conversation_resolution,
    "requiresLinearHistory": lambda p: p.required_linear_history,
    "lockBranch": lambda p: p.lock_branch,
}
SCHEMA["BranchProtectionRule"] = {
    name: (None, (lambda g: lambda p, a, c: g(p))(get)) for name, get in _RULE_FIELDS.items()}
# A collaborator is (user, effective role); an edge is (index, collaborator).
SCHEMA["RepositoryCollaboratorConnection"] = {
    "nodes": ("User", lambda p, a, c: [user for user, _ in p.items]),
    "edges": ("RepositoryCollaboratorEdge", lambda p, a, c: [(p.start + i, item)
                                                            for i, item in enumerate(p.items)]),
    "totalCount": (None, lambda p, a, c: p.total),
    "pageInfo": ("PageInfo", lambda p, a, c: p),
}


def _edge_user(edge: tuple[int, tuple[User, str]]) -> User:
    return edge[1][0]


SCHEMA["RepositoryCollaboratorEdge"] = {
    "cursor": (None, lambda e, a, c: _cursor(e[0])),
    "node": ("User", lambda e, a, c: _edge_user(e)),
    # RepositoryPermission: ADMIN, MAINTAIN, WRITE, TRIAGE, READ (the role, upper-cased).
    "permission": (None, lambda e, a, c: e[1][1].upper()),
}
SCHEMA["User"]["databaseId"] = (None, lambda u, a, c: u.id)
SCHEMA["RepositoryCodeowners"] = {"errors": ("RepositoryCodeownersError",
                                             lambda o, a, c: list(o["errors"]))}
# REST's error objects, field for field.
SCHEMA["RepositoryCodeownersError"] = {
    key: (None, (lambda k: lambda e, a, c: e[k])(key))
    for key in ("column", "kind", "line", "message", "path", "source", "suggestion")}

# Arguments each field requires.
REQUIRED_ARGS = {("Query", "repository"): ("owner", "name"),
                 ("Repository", "ref"): ("qualifiedName",)}
# Connections: each needs `first` or `last`, at most MAX_PAGE.
CONNECTIONS = {("Repository", "repositoryTopics"), ("Repository", "collaborators")}
MAX_PAGE = 100
# Fields of a non-null type that can fail: their null goes to the nearest nullable parent.
NON_NULL = {("Repository", "hasVulnerabilityAlertsEnabled")}
# Enum types, and the arguments of those types, that validation checks.
ENUMS = {"CollaboratorAffiliation": ("ALL", "DIRECT", "OUTSIDE")}
ENUM_ARGS = {("Repository", "collaborators"): {"affiliation": "CollaboratorAffiliation"}}


def _concrete(type_name: str, value: Any) -> str:
    if isinstance(value, GitObject):
        return value.kind
    if type_name == "RepositoryOwner":
        return "Organization" if getattr(value, "type", "") == "Organization" else "User"
    return type_name


def _applies(cond: str | None, concrete: str) -> bool:
    return cond is None or cond == concrete or concrete in POSSIBLE.get(cond, set())


# ----------------------------------------------------------------------------- validation
def _error(message: str, line: int, column: int, path: list[str | int],
           extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"path": path}
    if extensions:
        err["extensions"] = extensions
    err["locations"] = [{"line": line, "column": column}]
    err["message"] = message
    return err


def _page_size(sel: Field, variables: Mapping[str, Any]) -> int | None:
    for key in ("first", "last"):
        value = sel.args.get(key)
        value = variables.get(value.name) if isinstance(value, Var) else value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _pagination_errors(sel: Field, path: list[str | int],
                       variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    size = _page_size(sel, variables)
    where = {"path": path, "locations": [{"line": sel.line, "column": sel.column}]}
    if size is None:
        return [{**where, "type": "MISSING_PAGINATION_BOUNDARIES",
                 "message": f"You must provide a `first` or `last` value to properly "
                            f"paginate the `{sel.name}` connection."}]
    if not 0 <= size <= MAX_PAGE:
        key = "first" if "first" in sel.args else "last"
        return [{**where, "type": "EXCESSIVE_PAGINATION",
                 "message": f"Requesting {size} records on the `{sel.name}` connection "
                            f"exceeds the `{key}` limit of {MAX_PAGE} records."}]
    return []


def _cost(doc: Document, op: Operation, variables: Mapping[str, Any]) -> int:
    """GitHub's cost of a query: every connection needs as many requests as its parents'
    page sizes multiplied; the sum ÷ 100, rounded, at least 1."""

    def walk(type_name: str, selections: list[Selection], requests: int,
             seen: frozenset[str]) -> int:
        total = 0
        for sel in selections:
            if isinstance(sel, InlineFragment):
                total += walk(sel.type_condition or type_name, sel.selections, requests, seen)
            elif isinstance(sel, FragmentSpread):
                frag = doc.fragments.get(sel.name)
                if frag is not None and sel.name not in seen:
                    total += walk(frag[0], frag[1], requests, seen | {sel.name})
            elif sel.selections is not None:
                spec = SCHEMA.get(type_name, {}).get(sel.name)
                if spec is None or spec[0] is None:
                    continue
                inner = requests
                if (type_name, sel.name) in CONNECTIONS:
                    total += requests
                    inner = requests * (_page_size(sel, variables) or 0)
                total += walk(spec[0], sel.selections, inner, seen)
        return total

    return max(1, int(walk("Query", op.selections, 1, frozenset()) / 100 + 0.5))


def validate(doc: Document, op: Operation, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """GitHub-style validation errors (GitHub runs these before executing anything)."""
    errors: list[dict[str, Any]] = []
    declared = {v.name: v for v in op.variables}
    used: set[str] = set()
    opname = f"{op.kind} {op.name}" if op.name else op.kind

    def walk_value(v: Any) -> None:
        if isinstance(v, Var):
            used.add(v.name)
        elif isinstance(v, list):
            for x in v:
                walk_value(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk_value(x)

    def walk(type_name: str, selections: list[Selection], path: list[str | int],
             seen_fragments: tuple[str, ...]) -> None:
        for sel in selections:
            if isinstance(sel, InlineFragment):
                walk(sel.type_condition or type_name, sel.selections, path, seen_fragments)
                continue
            if isinstance(sel, FragmentSpread):
                frag = doc.fragments.get(sel.name)
                if frag is None:
                    errors.append(_error(f"Fragment {sel.name} was used, but not defined",
                                         sel.line, sel.column, [*path, f"... {sel.name}"]))
                elif sel.name not in seen_fragments:
                    walk(frag[0], frag[1], path, (*seen_fragments, sel.name))
                continue
            here = [*path, sel.key]
            for v in sel.args.values():
                walk_value(v)
            if sel.name == "__typename":
                continue
            spec = SCHEMA.get(type_name, {}).get(sel.name)
            if spec is None:
                errors.append(_error(
                    f"Field '{sel.name}' doesn't exist on type '{type_name}'", sel.line,
                    sel.column, here, {"code": "undefinedField", "typeName": type_name,
                                       "fieldName": sel.name}))
                continue
            if (type_name, sel.name) in CONNECTIONS:
                errors.extend(_pagination_errors(sel, here, variables))
            for arg in REQUIRED_ARGS.get((type_name, sel.name), ()):
                if arg not in sel.args:
                    errors.append(_error(
                        f"Field '{sel.name}' is missing required arguments: {arg}", sel.line,
                        sel.column, here, {"code": "missingRequiredArguments",
                                           "className": "Field", "name": sel.name,
                                           "arguments": arg}))
            for arg, enum in ENUM_ARGS.get((type_name, sel.name), {}).items():
                value = sel.args.get(arg)
                if value is None or isinstance(value, Var) \
                        or (isinstance(value, Enum) and value.name in ENUMS[enum]):
                    continue
                shown = value.name if isinstance(value, Enum) else json.dumps(value)
                errors.append(_error(
                    f"Argument '{arg}' on Field '{sel.name}' has an invalid value ({shown}). "
                    f"Expected type '{enum}'.", sel.line, sel.column, here,
                    {"code": "argumentLiteralsIncompatible", "typeName": "Field",
                     "argumentName": arg}))
            result_type = spec[0]
            if result_type is None and sel.selections is not None:
                errors.append(_error(
                    f"Selections can't be made on scalars (field '{sel.name}' returns a "
                    "scalar)", sel.line, sel.column, here,
                    {"code": "selectionMismatch", "nodeName": f"field '{sel.name}'"}))
            elif result_type is not None and sel.selections is None:
                errors.append(_error(
                    f"Field must have selections (field '{sel.name}' returns {result_type} "
                    f"but has no selections. Did you mean '{sel.name} {{ ... }}'?)",
                    sel.line, sel.column, here,
                    {"code": "selectionMismatch", "nodeName": f"field '{sel.name}'"}))
            elif result_type is not None and sel.selections is not None:
                walk(result_type, sel.selections, here, seen_fragments)

    root = "Query" if op.kind == "query" else op.kind.capitalize()
    walk(root, op.selections, [opname], ())
    for name in sorted(used - set(declared)):
        errors.append(_error(f"Variable ${name} is used by {op.name or 'anonymous query'} but "
                             "not declared", 1, 1, [opname],
                             {"code": "variableNotDefined", "variableName": name}))
    for v in op.variables:
        if v.type.endswith("!") and variables.get(v.name, v.default) is None:
            errors.append({"extensions": {"value": None, "problems": [
                {"path": [], "explanation": "Expected value to not be null"}]},
                "locations": [{"line": 1, "column": 1}],
                "message": f"Variable ${v.name} of type {v.type} was provided invalid value"})
        value = variables.get(v.name, v.default)
        value = value.name if isinstance(value, Enum) else value
        allowed = ENUMS.get(v.type.rstrip("!"))
        if allowed is not None and value is not None and value not in allowed:
            errors.append({"extensions": {"value": value, "problems": [
                {"path": [], "explanation": f"Expected {json.dumps(value)} to be one of: "
                                            f"{', '.join(allowed)}"}]},
                "locations": [{"line": 1, "column": 1}],
                "message": f"Variable ${v.name} of type {v.type} was provided invalid value"})
    return errors


# ----------------------------------------------------------------------------- execution
def _arg(value: Any, ctx: Context) -> Any:
    if isinstance(value, Var):
        return ctx.variables.get(value.name)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, list):
        return [_arg(x, ctx) for x in value]
    if isinstance(value, dict):
        return {k: _arg(x, ctx) for k, x in value.items()}
    return value


def _merge(into: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(into.get(key), dict) and isinstance(value, dict):
        for k, v in value.items():
            _merge(into[key], k, v)
    elif isinstance(into.get(key), list) and isinstance(value, list) \
            and len(into[key]) == len(value):  # the same list selected twice: merge items
        for i, v in enumerate(value):
            if isinstance(into[key][i], dict) and isinstance(v, dict):
                for k, w in v.items():
                    _merge(into[key][i], k, w)
    else:
        into[key] = value


def execute_selections(doc: Document, type_name: str, obj: Any, selections: list[Selection],
                       path: list[str | int], ctx: Context) -> dict[str, Any]:
    concrete = _concrete(type_name, obj)
    out: dict[str, Any] = {}
    for sel in selections:
        if isinstance(sel, InlineFragment):
            if _applies(sel.type_condition, concrete):
                for k, v in execute_selections(doc, concrete, obj, sel.selections, path,
                                               ctx).items():
                    _merge(out, k, v)
            continue
        if isinstance(sel, FragmentSpread):
            cond, sub = doc.fragments[sel.name]
            if _applies(cond, concrete):
                for k, v in execute_selections(doc, concrete, obj, sub, path, ctx).items():
                    _merge(out, k, v)
            continue
        here = [*path, sel.key]
        if sel.name == "__typename":
            out[sel.key] = concrete
            continue
        result_type, resolve = SCHEMA[concrete].get(sel.name) or SCHEMA[type_name][sel.name]
        args = {k: _arg(v, ctx) for k, v in sel.args.items()}
        non_null = (concrete, sel.name) in NON_NULL or (type_name, sel.name) in NON_NULL
        try:
            value = resolve(obj, args, ctx)
        except FieldError as exc:
            err: dict[str, Any] = {"type": exc.type, "path": here}
            if exc.extensions is not None:
                err["extensions"] = dict(exc.extensions)
            err["locations"] = [{"line": sel.line, "column": sel.column}]
            err["message"] = str(exc)
            ctx.errors.append(err)
            if non_null:
                raise _NullBubble from exc
            value = None
        if value is not None and result_type is not None and sel.selections is not None:
            try:
                if isinstance(value, list):  # a list field: each item gets the selections
                    value = [execute_selections(doc, result_type, item, sel.selections,
                                                [*here, i], ctx)
                             for i, item in enumerate(value)]
                else:
                    value = execute_selections(doc, result_type, value, sel.selections, here,
                                               ctx)
            except _NullBubble:
                if non_null:
                    raise
                value = None
        _merge(out, sel.key, value)
    return out


@dataclass
class Outcome:
    body: dict[str, Any]
    cost: int
    is_mutation: bool = False


def run(st: FakeState, query: str, variables: Mapping[str, Any] | None,
        operation_name: str | None, can_see: Callable[[Repo], bool],
        rate: Callable[[int], dict[str, Any] | None]) -> Outcome:
    """Answer one request. `rate(cost)` charges the budget and returns the rateLimit object,
    or None when the budget cannot cover the cost."""
    try:
        doc = parse(query)
    except GraphQLSyntaxError as exc:
        return Outcome({"errors": [{"message": f"Parse error on {exc}",
                                    "locations": [{"line": exc.line, "column": exc.column}]}]},
                       1)
    ops = [o for o in doc.operations if operation_name is None or o.name == operation_name]
    if len(ops) != 1:
        message = ("An operation name is required" if len(ops) > 1
                   else f"Operation name {operation_name!r} not found" if operation_name
                   else "No operations in query document")
        return Outcome({"errors": [{"message": message}]}, 1)
    op = ops[0]
    if op.kind != "query":
        return Outcome({"errors": [{"message": f"the fake GitHub does not run {op.kind}s"}]},
                       1, is_mutation=op.kind == "mutation")
    variables = {**{v.name: v.default for v in op.variables if v.default is not None},
                 **(variables or {})}
    errors = validate(doc, op, variables)
    if errors:
        return Outcome({"errors": errors}, 1)
    cost = _cost(doc, op, variables)
    rate_limit = rate(cost)
    if rate_limit is None:
        return Outcome({"errors": [{"type": "RATE_LIMITED", "code": "graphql_rate_limit",
                                    "message": "API rate limit already exceeded"}]}, 0)
    ctx = Context(st, can_see, variables, rate_limit)
    data = execute_selections(doc, "Query", None, op.selections, [], ctx)
    body: dict[str, Any] = {"data": data}
    if ctx.errors:
        body["errors"] = ctx.errors
    return Outcome(body, cost)
