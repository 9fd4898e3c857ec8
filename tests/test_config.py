"""config.yaml parsing: the valid shapes, and every error with its line and key path."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from textwrap import dedent

import pytest
from pydantic import ValidationError

from app.config import (
    ACTION_NAMES,
    ENFORCED_ACTIONS,
    AccessControl,
    BlockPrsDetails,
    ConfigError,
    ConfigProblem,
    IssueDetails,
    OrgConfig,
    PolicyConfig,
    PrCommentDetails,
    parse_config,
)
from app.policies import REGISTRY

FULL = """\
access_control:
  authorized_team: my-org/platform-team      # "org/team-slug"
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
    issue_details:
      title: "Missing AGENTS.md"
      body: "Please add ..."
      labels: [compliance, agents]
  - name: Workflow token is read-only
    type: correct_workflow_permissions
    action: [create-issue, block-prs, comment-on-prs]
    pr_comment_details: {message: "Fix the workflow token first."}
    block_prs_details: {status_check_name: "policy/workflow-permissions"}
  - name: Catalog entry
    type: has_catalog_info_yaml
    action: [archive-repo, log-only]
  - name: Catalog owner
    type: catalog_info_has_owner
    action: log-only
"""

VALID_ACTIONS = "archive-repo, block-prs, comment-on-prs, create-issue, fix, log-only"


def errors(text: str) -> list[str]:
    """The problems of an invalid config, one printed line each."""
    with pytest.raises(ConfigError) as info:
        parse_config(dedent(text))
    return [str(p) for p in info.value.problems]


def policy(body: str, *, name: str = "P") -> str:
    """A config with one policy (starting at line 2) whose extra keys are `body`."""
    return f"policies:\n  - name: {name}\n" + body


# -- valid configs ---------------------------------------------------------------------------


def test_full_config() -> None:
    config = parse_config(FULL)

    assert config.access_control == AccessControl(authorized_team="my-org/platform-team")
    assert config.access_control.org == "my-org"
    assert config.access_control.team_slug == "platform-team"
    agents, workflow, catalog, owner = config.policies
    assert agents == PolicyConfig(
        name="Require AGENTS.md",
        type="has_agents_md",
        action=("create-issue",),
        issue_details=IssueDetails(
            title="Missing AGENTS.md", body="Please add ...", labels=("compliance", "agents")
        ),
    )
    assert agents.policy is REGISTRY["has_agents_md"]
    assert workflow.actions == ("create-issue", "block-prs", "comment-on-prs")
    assert workflow.pr_comment_details == PrCommentDetails(message="Fix the workflow token first.")
    assert workflow.block_prs_details == BlockPrsDetails(
        status_check_name="policy/workflow-permissions"
    )
    assert workflow.issue_details is None
    assert catalog.actions == ("archive-repo", "log-only")
    assert owner.type == "catalog_info_has_owner"


def test_models_are_frozen() -> None:
    config = parse_config(FULL)
    with pytest.raises(ValidationError):
        config.policies[0].name = "other"  # type: ignore[misc]
    assert isinstance(config.policies, tuple)
    assert isinstance(config.policies[0].actions, tuple)


def test_action_as_string_or_list() -> None:
    one = parse_config(policy("    type: has_agents_md\n    action: create-issue\n"))
    many = parse_config(policy("    type: has_agents_md\n    action: [create-issue]\n"))
    block = parse_config(
        policy("    type: has_agents_md\n    action:\n      - create-issue\n      - log-only\n")
    )
    assert one.policies[0].actions == ("create-issue",)
    assert many.policies[0].actions == ("create-issue",)
    assert block.policies[0].actions == ("create-issue", "log-only")


@pytest.mark.parametrize(
    ("written", "parsed"),
    [
        ("create_issue", "create-issue"),
        ("archive_repo", "archive-repo"),
        ("log_only", "log-only"),
        ("comment_on_prs", "comment-on-prs"),
        ("block_prs", "block-prs"),
    ],
)
def test_underscore_spellings_are_normalized(written: str, parsed: str) -> None:
    config = parse_config(policy(f"    type: has_agents_md\n    action: [{written}]\n"))
    assert config.policies[0].actions == (parsed,)


def test_optional_parts_default_to_none_or_empty() -> None:
    config = parse_config(
        policy("    type: has_agents_md\n    action: create-issue\n    issue_details: {}\n")
    )
    assert config.access_control is None
    details = config.policies[0].issue_details
    assert details == IssueDetails(title=None, body=None, labels=())


def test_no_policies_is_allowed_when_explicit() -> None:
    assert parse_config("policies: []\n").policies == ()


def test_merge_keys_and_aliases() -> None:
    config = parse_config(
        dedent(
            """\
            policies:
              - &base
                name: A
                type: has_agents_md
                action: [create_issue]
              - <<: *base
                name: B
            """
        )
    )
    assert [p.name for p in config.policies] == ["A", "B"]
    assert config.policies[1].actions == ("create-issue",)


def test_not_enforced_notes() -> None:
    # block-prs and comment-on-prs are enforced: FULL's workflow policy has no note.
    assert parse_config(FULL).not_enforced_notes() == []
    plain = parse_config(policy("    type: has_agents_md\n    action: create_issue\n"))
    assert plain.not_enforced_notes() == []
    # Every action is performed now (`fix` was the last): a config naming them all has no
    # note; the notes come back for an action a later release parses before performing.
    every = ", ".join(ACTION_NAMES)
    assert parse_config(policy(f"    type: has_agents_md\n    action: [{every}]\n")
                        ).not_enforced_notes() == []
    for action in sorted(set(ACTION_NAMES) - ENFORCED_ACTIONS):
        config = parse_config(policy(f"    type: has_agents_md\n    action: {action}\n"))
        assert config.not_enforced_notes() == [
            f"policy 'P': action {action!r} is not enforced yet"]


def test_action_constants() -> None:
    assert tuple(sorted(ACTION_NAMES)) == ACTION_NAMES
    assert frozenset({"create-issue", "archive-repo", "log-only", "block-prs",
                      "comment-on-prs", "fix"}) == ENFORCED_ACTIONS
    assert set(ACTION_NAMES) == ENFORCED_ACTIONS


def test_every_registered_policy_type_parses() -> None:
    for index, (policy_type, impl) in enumerate(REGISTRY.items()):
        # The documented example parameters (JSON is YAML).
        params = f"    params: {json.dumps(impl.example)}\n" if impl.example else ""
        config = parse_config(policy(f"    type: {policy_type}\n    action: log-only\n"
                                     + params))
        assert config.policies[0].type == policy_type, index
        assert config.policies[0].params == impl.Params.model_validate(impl.example)


# -- the error format ------------------------------------------------------------------------


def test_problem_and_error_format() -> None:
    problem = ConfigProblem(7, 13, "policies[1].action", "unknown action 'x'")
    assert str(problem) == "config.yaml:7: policies[1].action: unknown action 'x'"
    assert str(ConfigProblem(None, None, "", "the file is empty")) == (
        "config.yaml: the file is empty"
    )
    error = ConfigError([problem, ConfigProblem(2, 1, "a", "b")])
    assert [p.line for p in error.problems] == [2, 7]
    assert str(error) == (
        "config.yaml:2: a: b\nconfig.yaml:7: policies[1].action: unknown action 'x'"
    )
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_filename_is_used_in_messages() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("policies: {}\n", filename=".github/config.yaml")
    assert str(info.value) == ".github/config.yaml:1: policies: expected a list, got a mapping"


def test_unknown_action_names_key_and_line() -> None:
    text = """\
        access_control:
          authorized_team: my-org/platform-team
        policies:
          - name: A
            type: has_agents_md
            action: create-issue
          - name: B
            type: has_agents_md
            action: create-isue
        """
    assert errors(text) == [
        "config.yaml:9: policies[1].action: unknown action 'create-isue' "
        f"(expected one of: {VALID_ACTIONS})"
    ]


def test_unknown_action_in_a_list_names_the_item() -> None:
    text = policy("    type: has_agents_md\n    action:\n      - log-only\n      - archive\n")
    assert errors(text) == [
        f"config.yaml:6: policies[0].action[1]: unknown action 'archive' "
        f"(expected one of: {VALID_ACTIONS})"
    ]


def test_problem_carries_line_column_and_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(policy("    type: has_agents_md\n    action: nope\n"))
    (problem,) = info.value.problems
    assert (problem.line, problem.column, problem.path) == (4, 5, "policies[0].action")
    assert problem.message.startswith("unknown action 'nope'")


def test_malformed_yaml_reports_parser_line_and_column() -> None:
    (message,) = errors("policies:\n  - name: [a\n    type: x\n")
    assert message.startswith("config.yaml:3: invalid YAML at column 9: ")
    assert "while parsing a flow sequence that starts at line 2, column 11" in message

    (message,) = errors("policies: []\nname: a: b\n")
    assert message == "config.yaml:2: invalid YAML at column 8: mapping values are not allowed here"


def test_tab_indentation_is_a_syntax_error() -> None:
    (message,) = errors("policies:\n\t- name: a\n")
    assert message.startswith("config.yaml:2: invalid YAML at column 1: found character '\\t'")


def test_more_than_one_document() -> None:
    assert errors("policies: []\n---\npolicies: []\n") == [
        "config.yaml:2: the file holds more than one YAML document; a config is a single document"
    ]


def test_unknown_keys_at_every_level_with_suggestions() -> None:
    text = """\
        acess_control:
          authorized_team: my-org/platform-team
        access_control:
          authorised_team: my-org/platform-team
        policies:
          - name: A
            type: has_agents_md
            actions: create-issue
            issue_details:
              titel: x
              colour: red
            pr_comment_details: {messages: hi}
            block_prs_details: {status_check: x}
        """
    assert errors(text) == [
        "config.yaml:1: acess_control: unknown key 'acess_control' "
        "(did you mean 'access_control'?)",
        "config.yaml:3: access_control: missing required key 'authorized_team'",
        "config.yaml:4: access_control.authorised_team: unknown key 'authorised_team' "
        "(did you mean 'authorized_team'?)",
        "config.yaml:6: policies[0]: missing required key 'action'",
        "config.yaml:8: policies[0].actions: unknown key 'actions' (did you mean 'action'?)",
        "config.yaml:10: policies[0].issue_details.titel: unknown key 'titel' "
        "(did you mean 'title'?)",
        "config.yaml:11: policies[0].issue_details.colour: unknown key 'colour' "
        "(valid keys: body, labels, title)",
        "config.yaml:12: policies[0].pr_comment_details: missing required key 'message'",
        "config.yaml:12: policies[0].pr_comment_details.messages: unknown key 'messages' "
        "(did you mean 'message'?)",
        "config.yaml:13: policies[0].block_prs_details: missing required key 'status_check_name'",
        "config.yaml:13: policies[0].block_prs_details.status_check: unknown key 'status_check' "
        "(did you mean 'status_check_name'?)",
    ]


def test_key_written_one_level_too_high() -> None:
    text = """\
        authorized_team: my-org/platform-team
        policies:
          - name: A
            type: has_agents_md
            action: create-issue
            labels: [x]
        """
    assert errors(text) == [
        "config.yaml:1: authorized_team: unknown key 'authorized_team' "
        "(it belongs under 'access_control')",
        "config.yaml:6: policies[0].labels: unknown key 'labels' "
        "(it belongs under 'issue_details')",
    ]


def test_unknown_policy_type_lists_valid_ones() -> None:
    text = policy("    type: has_agent_md\n    action: log-only\n")
    assert errors(text) == [
        "config.yaml:3: policies[0].type: unknown policy type 'has_agent_md' "
        f"(expected one of: {', '.join(REGISTRY)})"
    ]


def test_wrong_types() -> None:
    text = """\
        access_control: my-org/platform-team
        policies:
          - name: 2024
            type: [has_agents_md]
            action: {create-issue: true}
            issue_details:
              title: true
              labels: compliance
          - name: B
            type: has_agents_md
            action: [create-issue, 5]
            issue_details:
              labels: [ok, [nested]]
          - just-a-string
        """
    assert errors(text) == [
        "config.yaml:1: access_control: expected a mapping, got a string ('my-org/platform-team')",
        "config.yaml:3: policies[0].name: expected a string, got a number (2024); quote it",
        "config.yaml:4: policies[0].type: expected a string, got a list",
        "config.yaml:5: policies[0].action: expected an action or a list of actions, got a mapping",
        "config.yaml:7: policies[0].issue_details.title: expected a string, got a boolean "
        "(true); quote it",
        "config.yaml:8: policies[0].issue_details.labels: expected a list, got a string "
        "('compliance')",
        "config.yaml:11: policies[1].action[1]: expected an action name, got a number (5)",
        "config.yaml:13: policies[1].issue_details.labels[1]: expected a string, got a list",
        "config.yaml:14: policies[2]: expected a mapping, got a string ('just-a-string')",
    ]


def test_missing_required_keys() -> None:
    text = """\
        policies:
          - type: has_agents_md
            action: log-only
          - name: B
            action: log-only
          - name: C
            type: has_agents_md
        """
    assert errors(text) == [
        "config.yaml:2: policies[0]: missing required key 'name'",
        "config.yaml:4: policies[1]: missing required key 'type'",
        "config.yaml:6: policies[2]: missing required key 'action'",
    ]
    assert errors("access_control:\n  authorized_team: a/b\n") == [
        "config.yaml:1: missing required key 'policies'"
    ]


def test_empty_and_null_actions() -> None:
    text = """\
        policies:
          - name: A
            type: has_agents_md
            action: []
          - name: B
            type: has_agents_md
            action:
          - name: C
            type: has_agents_md
            action: [log-only, log_only]
        """
    assert errors(text) == [
        "config.yaml:4: policies[0].action: the action list is empty; give at least one of: "
        f"{VALID_ACTIONS}",
        "config.yaml:7: policies[1].action: expected an action or a list of actions, "
        "got null (an empty value)",
        "config.yaml:10: policies[2].action: action 'log-only' is listed more than once",
    ]


def test_duplicate_policy_names() -> None:
    text = """\
        policies:
          - name: Same
            type: has_agents_md
            action: log-only
          - name: Other
            type: has_agents_md
            action: log-only
          - name: Same
            type: has_catalog_info_yaml
            action: log-only
        """
    assert errors(text) == [
        "config.yaml:8: policies[2].name: duplicate policy name 'Same' (first used at line 2): "
        "names identify violations, so each policy needs its own"
    ]


def test_duplicate_policy_names_are_reported_alongside_other_errors() -> None:
    text = """\
        policies:
          - name: Same
            type: nope
            action: log-only
          - name: Same
            type: has_agents_md
            action: log-only
        """
    messages = errors(text)
    assert [m.split(":")[1] for m in messages] == ["3", "5"]
    assert "duplicate policy name 'Same'" in messages[1]


def test_model_rejects_duplicate_names_when_built_directly() -> None:
    one = PolicyConfig(name="A", type="has_agents_md", action=("log-only",))
    with pytest.raises(ValidationError, match="duplicate policy name 'A'"):
        OrgConfig(policies=(one, one))


@pytest.mark.parametrize(
    "team",
    ["my-org", "my-org/", "/team", "my-org/team/extra", "@my-org/team", "my org/team", "a/b c"],
)
def test_authorized_team_format(team: str) -> None:
    text = f"access_control:\n  authorized_team: '{team}'\npolicies: []\n"
    assert errors(text) == [
        "config.yaml:2: access_control.authorized_team: must be 'org/team-slug' "
        f"(for example 'my-org/platform-team'), got {team!r}"
    ]


@pytest.mark.parametrize("team", ["my-org/platform-team", "Org1/team_2", "a/b", "o-r-g/t.eam"])
def test_authorized_team_accepts_slugs(team: str) -> None:
    config = parse_config(f"access_control:\n  authorized_team: {team}\npolicies: []\n")
    assert config.access_control is not None
    assert config.access_control.authorized_team == team


def test_policies_not_a_list() -> None:
    assert errors("policies:\n  name: A\n  type: has_agents_md\n") == [
        "config.yaml:1: policies: expected a list, got a mapping"
    ]
    assert errors("policies:\n") == [
        "config.yaml:1: policies: expected a list, got null (an empty value)"
    ]


def test_top_level_not_a_mapping() -> None:
    assert errors("- name: A\n  type: has_agents_md\n") == [
        "config.yaml:1: the top level must be a mapping with 'policies' "
        "(and optionally 'access_control'), got a list"
    ]
    assert errors("just text\n") == [
        "config.yaml:1: the top level must be a mapping with 'policies' "
        "(and optionally 'access_control'), got a string ('just text')"
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_document(text: str) -> None:
    (message,) = errors(text)
    assert "the file is empty" in message


def test_duplicate_keys_report_both_lines() -> None:
    text = """\
        policies:
          - name: A
            type: has_agents_md
            action: log-only
            issue_details:
              title: One
              title: Two
            type: has_catalog_info_yaml
        policies: []
        """
    assert errors(text) == [
        "config.yaml:7: policies[0].issue_details.title: duplicate key 'title' "
        "(first given at line 6)",
        "config.yaml:8: policies[0].type: duplicate key 'type' (first given at line 3)",
        "config.yaml:9: policies: duplicate key 'policies' (first given at line 1)",
    ]


def test_empty_sections_are_errors() -> None:
    text = """\
        access_control:
        policies:
          - name: A
            type: has_agents_md
            action: create-issue
            issue_details:
            block_prs_details:
        """
    assert errors(text) == [
        "config.yaml:1: access_control: is empty; give its keys or remove it",
        "config.yaml:6: policies[0].issue_details: is empty; give its keys or remove it",
        "config.yaml:7: policies[0].block_prs_details: is empty; give its keys or remove it",
    ]


def test_blank_and_oversized_strings() -> None:
    long_title = "t" * 257
    text = f"""\
        policies:
          - name: ''
            type: has_agents_md
            action: create-issue
            issue_details:
              title: {long_title}
              body: '  '
              labels: [ok, '', OK]
        """
    assert errors(text) == [
        "config.yaml:2: policies[0].name: the policy name must not be empty",
        "config.yaml:6: policies[0].issue_details.title: the issue title is 257 characters "
        "long; the limit is 256",
        "config.yaml:7: policies[0].issue_details.body: the issue body must not be empty",
        "config.yaml:8: policies[0].issue_details.labels: a label must not be empty",
    ]
    assert errors(
        policy(
            "    type: has_agents_md\n    action: create-issue\n"
            "    issue_details: {labels: [ok, OK]}\n"
        )
    ) == ["config.yaml:5: policies[0].issue_details.labels: label 'OK' is listed more than once"]


def test_unsupported_tags_and_values() -> None:
    text = """\
        policies:
          - name: !secret A
            type: has_agents_md
            action: !!set {log-only}
        """
    assert errors(text) == [
        "config.yaml:2: policies[0].name: unsupported YAML tag !secret; remove it",
        "config.yaml:4: policies[0].action: unsupported YAML value (a set (!!set))",
    ]
    # Standard tags are fine.
    config = parse_config(
        policy("    type: !!str has_agents_md\n    action: log-only\n", name="!!str 2024")
    )
    assert config.policies[0].name == "2024"


def test_self_referencing_alias() -> None:
    text = policy(
        "    type: has_agents_md\n    action: create-issue\n    issue_details: &d {title: *d}\n"
    )
    assert errors(text) == [
        "config.yaml:5: policies[0].issue_details.title: an alias refers to a mapping or list "
        "that contains it"
    ]


def test_alias_bomb_is_refused() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 7):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    (message,) = errors("\n".join(lines) + "\npolicies: []\n")
    assert "more than 20000 values once aliases are expanded" in message


def test_all_errors_are_collected_and_sorted_by_line() -> None:
    text = """\
        access_control:
          authorized_team: platform-team
        policies:
          - name: A
            type: has_agents_md
            action: create-isue
          - name: A
            type: unknown_type
            action: [log-only]
            issue_details:
              labels: [1]
            extra: true
        unknown_top: 1
        """
    messages = errors(text)
    lines = [int(m.split(":")[1]) for m in messages]
    assert lines == sorted(lines)
    assert lines == [2, 6, 7, 8, 11, 12, 13]
    assert messages[0].startswith("config.yaml:2: access_control.authorized_team: must be")
    assert messages[-1] == (
        "config.yaml:13: unknown_top: unknown key 'unknown_top' "
        "(valid keys: access_control, allow_repo_exemptions, defaults, enforcement, "
        "exemptions, issue_repo, notify, policies, protected_repos, public_badges)"
    )


def test_error_message_lists_every_problem_one_per_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(policy("    type: nope\n    action: nope\n"))
    text = str(info.value)
    assert text.count("\n") == 1
    assert text.splitlines()[0].startswith("config.yaml:3: policies[0].type: unknown policy type")
    assert text.splitlines()[1].startswith("config.yaml:4: policies[0].action: unknown action")


def test_dotnet_style_config_parses_as_is() -> None:
    text = """\
        # .github/config.yaml, as the .NET enforcer's users write it
        access_control:
          authorized_team: 'acme/security-team'

        policies:
          - name: 'Check for AGENTS.md'
            type: 'has_agents_md'
            action: 'create_issue'
            issue_details:
              title: 'Compliance: AGENTS.md file is missing'
              body: 'Add an AGENTS.md file to the repository root.'
              labels: ['policy-violation', 'documentation']

          - name: 'Critical policy'
            type: 'has_catalog_info_yaml'
            action: ['create-issue', 'archive-repo']

          - name: 'Verify Workflow Permissions'
            type: 'correct_workflow_permissions'
            action: 'log_only'
        """
    config = parse_config(dedent(text))
    assert [p.actions for p in config.policies] == [
        ("create-issue",),
        ("create-issue", "archive-repo"),
        ("log-only",),
    ]
    assert config.access_control is not None
    assert config.access_control.authorized_team == "acme/security-team"


def test_documented_example_parses() -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    example = doc.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(example)
    assert len(config.policies) >= 4
    # Its block-prs and comment-on-prs are enforced: nothing is left as a note.
    assert any("block-prs" in pc.actions for pc in config.policies)
    assert config.not_enforced_notes() == []
    # It shows parameters, targeting and an exemption.
    assert any(pc.params.model_fields_set for pc in config.policies)
    assert config.exemptions
