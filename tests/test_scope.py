"""Targeting and exemptions as plain data: which repositories a policy applies to, and which
failures are let off, with the reason and the date shown."""

from __future__ import annotations

import datetime as dt
from textwrap import dedent

import pytest

from app.config.loader import ConfigError, parse_config
from app.config.scope import Target
from app.policies import RepoSnapshot
from app.services.judging import REPO_EXEMPTIONS_PATH, judge, needs_of, repo_exemptions
from app.services.reminders import OVERRIDES_PATH
from app.sources.custom_properties import CustomProperties
from app.sources.settings import RepoSettings

CONFIG = """\
defaults:
  exclude: [sandbox-*]
policies:
  - name: agents
    type: has_agents_md
    action: create-issue
  - name: backend-agents
    type: has_agents_md
    action: log-only
    topics: [Backend]
    visibility: [private, internal]
  - name: critical-agents
    type: has_agents_md
    action: log-only
    custom_properties:
      tier: critical
    include: ["*"]
    exclude: []
  - name: forks-too
    type: has_agents_md
    action: log-only
    fork: true
exemptions:
  - repos: [legacy-*]
    policies: [agents]
    reason: being retired in Q1
    expires: 2027-01-31
    approved_by: "@alice"
  - repos: [tooling]
    policies: ["*"]
    reason: vendored tools, no agents
allow_repo_exemptions: true
"""

DAY = dt.datetime(2027, 1, 15, 12, tzinfo=dt.UTC).timestamp()


def settings(topics: tuple[str, ...] = ()) -> RepoSettings:
    return RepoSettings(visibility="private", default_branch="main", description=None,
                        topics=topics, has_issues=True, has_wiki=False, has_projects=False,
                        delete_branch_on_merge=False, allow_merge_commit=True,
                        allow_squash_merge=True, allow_rebase_merge=True, pushed_at=None)


def snap(name: str, *, files: dict[str, str | None] | None = None, topics: tuple[str, ...] = (),
         visibility: str = "private", fork: bool = False, tier: object = None,
         at: float = DAY) -> RepoSnapshot:
    return RepoSnapshot(
        id=1, full_name=f"acme/{name}", default_branch="main", fork=fork, visibility=visibility,
        files={"AGENTS.md": None, OVERRIDES_PATH: None, REPO_EXEMPTIONS_PATH: None,
               **(files or {})},
        data={"settings": settings(topics),
              "custom_properties": CustomProperties({} if tier is None else {"tier": tier})},
        taken_at=at)


def test_targeting_defaults_and_keys() -> None:
    cfg = parse_config(CONFIG)
    judged = judge(cfg, snap("api", topics=("backend",)))
    # Every policy applies except the one that needs a critical tier (and forks-too passes
    # the name filters); default exclude comes from `defaults:`.
    assert set(judged.results) == {"agents", "backend-agents", "forks-too"}
    assert judged.out_of_scope == {
        "critical-agents": "custom property tier is null (an empty value), not one of critical"}
    assert all(not r.passed for r in judged.results.values())

    judged = judge(cfg, snap("sandbox-1", tier="critical"))
    # `exclude: []` on the policy overrides the default's exclude.
    assert set(judged.results) == {"critical-agents"}
    assert judged.out_of_scope["agents"] == "matched by `exclude` (sandbox-*)"
    assert judged.out_of_scope["backend-agents"] == "matched by `exclude` (sandbox-*)"

    judged = judge(cfg, snap("web", visibility="public", topics=("frontend",),
                             tier=["critical", "pci"]))
    assert judged.out_of_scope["backend-agents"] == \
        "visibility public is not one of private, internal"
    assert "critical-agents" in judged.results  # a multi-select value matches any of its

    judged = judge(cfg, snap("web", topics=("frontend",)))
    assert judged.out_of_scope["backend-agents"] == "has none of the topics backend"

    judged = judge(cfg, snap("copy", fork=True))
    assert set(judged.results) == {"forks-too"}
    assert judged.out_of_scope["agents"].startswith("forks are left out")


def test_needs_follow_the_targeting() -> None:
    cfg = parse_config(CONFIG)
    needs = needs_of(cfg)
    assert {"settings", "custom_properties"} <= needs.sources
    assert {"AGENTS.md", OVERRIDES_PATH, REPO_EXEMPTIONS_PATH} <= needs.files
    plain = parse_config("policies:\n  - name: a\n    type: has_agents_md\n"
                         "    action: log-only\n")
    assert needs_of(plain).sources == frozenset()
    assert REPO_EXEMPTIONS_PATH not in needs_of(plain).files
    assert Target.of(plain.policies[0], plain.defaults) == Target()


def test_exemptions_show_and_expire_by_themselves() -> None:
    cfg = parse_config(CONFIG)
    judged = judge(cfg, snap("legacy-billing"))
    assert judged.exempt["agents"]["text"] == \
        "exempt (being retired in Q1, until 2027-01-31, approved by @alice)"
    assert judged.exempt["agents"]["source"] == "config"
    assert "forks-too" not in judged.exempt  # the exemption names one policy
    # The expiry day is the last day it applies; the next day the failure stands.
    last = dt.datetime(2027, 1, 31, 23, 59, tzinfo=dt.UTC).timestamp()
    assert "agents" in judge(cfg, snap("legacy-billing", at=last)).exempt
    after = dt.datetime(2027, 2, 1, 0, 1, tzinfo=dt.UTC).timestamp()
    assert judge(cfg, snap("legacy-billing", at=after)).exempt == {}
    # "*" exempts every policy; no expiry reads so.
    judged = judge(cfg, snap("tooling"))
    assert set(judged.exempt) == set(judged.results)
    assert judged.exempt["agents"]["text"] == "exempt (vendored tools, no agents, no expiry)"
    # A passing policy is not "exempt".
    assert judge(cfg, snap("tooling", files={"AGENTS.md": "x"})).exempt == {}


def test_a_repository_exempts_itself_within_limits() -> None:
    cfg = parse_config(CONFIG)
    text = dedent("""\
        exemptions:
          - policies: [agents]
            reason: migrating to the new template
            expires: 2027-03-01
          - policies: [backend-agents]
            reason: forever
            expires: 2099-01-01
          - policies: [nope]
            reason: x
            expires: 2027-02-01
          - policies: [forks-too]
            expires: 2027-02-01
        """)
    judged = judge(cfg, snap("api", files={REPO_EXEMPTIONS_PATH: text}, topics=("backend",)))
    assert judged.exempt["agents"]["source"] == REPO_EXEMPTIONS_PATH
    assert judged.exempt["agents"]["text"] == \
        "exempt (migrating to the new template, until 2027-03-01)"
    assert "backend-agents" not in judged.exempt and "forks-too" not in judged.exempt
    assert len(judged.notes) == 3
    assert "more than 366 days ahead" in judged.notes[0]
    assert "not in the organization's config (nope)" in judged.notes[1]
    assert judged.notes[2].startswith(f"{REPO_EXEMPTIONS_PATH}: exemptions[3].reason: ")

    # Not allowed by the org config: the file is not even read.
    strict = parse_config(CONFIG.replace("allow_repo_exemptions: true",
                                         "allow_repo_exemptions: false"))
    assert repo_exemptions(text, "api", strict, dt.date(2027, 1, 15)) == ([], [])
    broken = repo_exemptions("exemptions: [", "api", cfg, dt.date(2027, 1, 15))
    assert broken[0] == [] and "no exemption in it applies" in broken[1][0]


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(dedent(text))
    return [str(p) for p in info.value.problems]


def test_config_errors_name_the_line() -> None:
    assert errors("""\
        policies:
          - name: a
            type: has_agents_md
            action: log-only
            archived: true
            include: [acme/api]
        exemptions:
          - repos: [x]
            policies: [a]
            reason: " "
          - repos: [y]
            policies: [b]
            reason: why
        """) == [
        "config.yaml:5: policies[0].archived: archived repositories are read-only on GitHub "
        "and are not evaluated; `archived: true` is not supported",
        "config.yaml:6: policies[0].include: a repository glob 'acme/api' must be a "
        "repository name or a glob of names within the organization, without the owner",
        "config.yaml:10: exemptions[0].reason: the exemption's reason must not be empty",
    ]
    assert errors("""\
        policies:
          - name: a
            type: has_agents_md
            action: log-only
        exemptions:
          - repos: [y]
            policies: [b]
            reason: why
        """) == ["config.yaml:5: exemptions: exemptions[0] names policies that are not in "
                 "the config: 'b'"]
    assert errors("""\
        policies:
          - name: a
            type: has_agents_md
            action: log-only
            visibility: [secret]
            custom_properties: {"bad name": x}
        exemptions:
          - repos: [y]
            policies: [a]
            reason: why
            expires: 2027-01-01T10:00:00
          - repos: []
            policies: [a]
            reason: why
        """)[:2] == [
        "config.yaml:5: policies[0].visibility[0]: Input should be 'public', 'private' or "
        "'internal'",
        "config.yaml:6: policies[0].custom_properties: 'bad name' is not a custom property "
        "name (letters, digits, _ - $ #)",
    ]
