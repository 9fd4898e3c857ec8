"""docs/configuration.md documents everything the code accepts: every policy type (under a
heading whose anchor its messages link to) with all its parameters, every config key, every
data source with its webhook events; its complete examples parse, and its links resolve.

Everything is found by introspecting the code, so a new type, parameter or key fails here
until it is documented."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from app.config.loader import ConfigError, parse_config
from app.config.models import Defaults, OrgConfig, PolicyConfig
from app.config.scope import Exemption, Targeting
from app.policies import REGISTRY
from app.policies.base import DOCS_URL
from app.sources import SOURCES

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "configuration.md"
TEXT = DOC.read_text(encoding="utf-8")
FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Heading:
    level: int
    title: str
    anchor: str
    # Index of the heading's line in LINES.
    line: int


LINES = TEXT.splitlines()


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks included) dropped
    except `-` and `_`, each space a `-`."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def headings() -> list[Heading]:
    """The Markdown headings outside code blocks, with GitHub's anchors (a repeated anchor
    gets `-1`, `-2`, … as on GitHub)."""
    out: list[Heading] = []
    seen: dict[str, int] = {}
    fenced = False
    for index, line in enumerate(LINES):
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = re.match(r"(#{1,6}) (.+)$", line)
        if fenced or match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.append(Heading(len(match.group(1)), match.group(2),
                           base if count == 0 else f"{base}-{count}", index))
    return out


HEADINGS = headings()
ANCHORS = {h.anchor for h in HEADINGS}


def section(anchor: str) -> str:
    """The text under the heading with `anchor`, up to the next heading of its level or
    higher."""
    found = [h for h in HEADINGS if h.anchor == anchor]
    assert found, f"no heading with the anchor #{anchor} in {DOC.name}"
    head = found[0]
    end = next((h.line for h in HEADINGS if h.line > head.line and h.level <= head.level),
               len(LINES))
    return "\n".join(LINES[head.line:end])


def yaml_blocks(text: str) -> list[str]:
    # As tests/test_schema.py finds them (an indented block inside a list item too).
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def complete_configs(text: str) -> list[str]:
    """The ```yaml blocks that are whole configs: with a top-level `policies:` line."""
    return [b for b in yaml_blocks(text) if re.search(r"^policies:", b, re.M)]


def keys(model: type[BaseModel]) -> list[str]:
    """The YAML keys of a model: each field's alias, else its name."""
    return [field.alias or name for name, field in model.model_fields.items()]


# ------------------------------------------------------------------------------- the tools
def test_slug_follows_github() -> None:
    assert slug("`file_exists`") == "file_exists"
    assert slug("The config's check run and previews") == "the-configs-check-run-and-previews"
    assert slug("Editor support (JSON Schema)") == "editor-support-json-schema"
    assert slug("Reminders: `remind_after_days` and `quiet_days`") == \
        "reminders-remind_after_days-and-quiet_days"


def test_sections_end_at_the_next_heading_of_their_level() -> None:
    text = section("file_exists")
    assert text.startswith("#### `file_exists`")
    assert "#### `file_contains`" not in text


# ---------------------------------------------------------------------------- policy types
def test_the_messages_link_here() -> None:
    assert DOCS_URL.endswith(f"/{DOC.parent.name}/{DOC.name}")


@pytest.mark.parametrize("policy_type", sorted(REGISTRY))
def test_every_type_has_its_anchor_and_parameters(policy_type: str) -> None:
    # Messages link to DOCS_URL#<type>: the heading's anchor must be exactly the type, and
    # only one heading may claim it (a second would get `<type>-1`).
    assert [h.title for h in HEADINGS if h.anchor == policy_type] == [f"`{policy_type}`"]
    assert f"{policy_type}-1" not in ANCHORS
    text = section(policy_type)
    impl = REGISTRY[policy_type]
    assert impl.title in text, f"{policy_type}: its title {impl.title!r} is not stated"
    # Each parameter has its row in the section's table (type, default, meaning).
    missing = [k for k in keys(impl.Params) if f"\n| `{k}` |" not in text]
    assert missing == [], f"{policy_type}: parameters without a table row: {missing}"
    # At least one complete example of this type, which parses.
    examples = [cfg for block in complete_configs(text)
                for cfg in [parse_config(block)]
                if any(p.type == policy_type for p in cfg.policies)]
    assert examples, f"{policy_type}: no complete ```yaml example with `type: {policy_type}`"


def test_every_type_is_in_the_overview_table() -> None:
    text = section("policy-types")
    head = text.split("\n### ", 1)[0]
    for policy_type in REGISTRY:
        assert f"[`{policy_type}`](#{policy_type})" in head, policy_type


# ------------------------------------------------------------------------------ config keys
@pytest.mark.parametrize("model", [OrgConfig, PolicyConfig, Defaults, Targeting, Exemption],
                         ids=lambda m: m.__name__)
def test_every_config_key_is_documented(model: type[BaseModel]) -> None:
    missing = [k for k in keys(model) if f"`{k}`" not in TEXT]
    assert missing == [], f"{model.__name__}: keys not documented: {missing}"


def test_targeting_and_exemption_keys_are_in_their_sections() -> None:
    targeting = section("targeting")
    assert [k for k in keys(Targeting) if f"| `{k}` |" not in targeting] == []
    exemptions = section("exemptions")
    assert [k for k in keys(Exemption) if f"| `{k}` |" not in exemptions] == []


# ----------------------------------------------------------------------------- data sources
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_and_its_events_are_documented(name: str) -> None:
    text = section("data-sources-and-webhooks")
    row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"source {name!r} has no row in the table"
    # `repository.edited` is written `repository` edited, as GitHub names events.
    events = {e.split(".")[0] for e in SOURCES[name].stale_on}
    assert [e for e in sorted(events) if f"`{e}`" not in row] == [], name
    actions = {e.split(".")[1] for e in SOURCES[name].stale_on if "." in e}
    assert [a for a in sorted(actions) if a not in row] == [], name


def test_the_manifest_subscribes_to_every_documented_event() -> None:
    manifest = (ROOT / "app.yml").read_text(encoding="utf-8")
    for source in SOURCES.values():
        for event in source.stale_on:
            assert re.search(rf"^\s+- {event.split('.')[0]}\b", manifest, re.M), event


# ---------------------------------------------------------------------------- the examples
def test_every_complete_example_parses() -> None:
    blocks = complete_configs(TEXT)
    # The complete example, the targeting and exemption examples, one per type at least.
    assert len(blocks) >= len(REGISTRY) + 3
    for block in blocks:
        parse_config(block)


def test_the_complete_example_uses_every_top_level_section() -> None:
    cfg = parse_config(complete_configs(section("a-complete-example"))[0])
    assert cfg.exemptions and cfg.defaults.exclude and any(p.params for p in cfg.policies)


def test_the_errors_example_is_what_the_parser_says() -> None:
    """The numbered file under Errors, fed to the parser, gives the listed messages."""
    text = section("errors")
    numbered = re.search(r"```\n( 1  .*?)```", text, re.S)
    assert numbered is not None
    source = "".join(line[4:] + "\n" for line in numbered.group(1).splitlines())
    listed = re.search(r"is reported as:\n\n```\n(.*?)```", text, re.S)
    assert listed is not None
    with pytest.raises(ConfigError) as info:
        parse_config(source)
    assert str(info.value).splitlines() == listed.group(1).splitlines()


# ------------------------------------------------------------------------------- the links
def test_every_link_within_the_page_resolves() -> None:
    prose = re.sub(r"^\s*```.*?^\s*```", "", TEXT, flags=re.S | re.M)
    broken = sorted({a for a in re.findall(r"\]\(#([^)]+)\)", prose) if a not in ANCHORS})
    assert broken == []


def test_links_from_the_code_and_readme_resolve() -> None:
    files = [ROOT / "README.md", *sorted((ROOT / "app").rglob("*.py"))]
    broken = []
    for path in files:
        for anchor in re.findall(r"configuration\.md#([A-Za-z0-9_-]+)",
                                 path.read_text(encoding="utf-8")):
            if anchor not in ANCHORS:
                broken.append(f"{path.relative_to(ROOT)}: #{anchor}")
    assert broken == []
