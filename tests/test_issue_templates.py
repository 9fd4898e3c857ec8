"""Issue title and body templates: every placeholder rendered into real issues on the fake
GitHub, literal braces kept, and what a template may not do (reach attributes, call code,
name unknown placeholders) refused as a config error with its line, never run."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from app import issue_text
from app.config import ConfigError, parse_config
from app.issue_text import TemplateProblem, check_template, render_template, to_jinja
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.stack import Stack
from tests.test_e2e import open_issues

PUBLIC_URL = "https://enforcer.example.com"
STACK_SETTINGS = {"PUBLIC_URL": PUBLIC_URL}

CONFIG = """\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
    issue_details:
      title: "{policy}: {repo} needs work"
      body: |
        Repository {repo} fails {{ policy }}.
        Why: {message}
        {% if details %}Details:
        {details}{% endif %}
        Dashboard: {dashboard_url}
        Literal JSON stays: {"enabled": true, "nested": {"a": 1}}
        Spaced braces stay: { repo } and a raw block: {% raw %}{repo} {{ x }}{% endraw %}
        Shouting: {{ repo | upper }}
"""


def config_errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return [str(p) for p in info.value.problems]


def policy_with(details: str) -> str:
    return ("policies:\n  - name: P\n    type: has_agents_md\n    action: create-issue\n"
            "    issue_details:\n" + details)


# ----------------------------------------------------------------------------- end to end
async def test_every_placeholder_is_rendered_into_the_issue(stack: Stack,
                                                            fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": CONFIG, "AGENTS.md": "x"}},
        {"name": "api", "files": {}},
    ])
    status, _ = await stack.deliver("installation", hooks.installation(st, inst))
    assert status == 202
    await stack.drain()

    issue = open_issues(st, "acme/api")["Require AGENTS.md"]
    assert issue.title == "Require AGENTS.md: acme/api needs work"
    body = issue.body or ""
    (v,) = await stack.violations("open")
    assert "Repository acme/api fails Require AGENTS.md." in body
    assert f"Why: {v.message}" in body and v.message
    assert f"Dashboard: {PUBLIC_URL}/orgs/acme/repos/api" in body
    assert 'Literal JSON stays: {"enabled": true, "nested": {"a": 1}}' in body
    assert "Spaced braces stay: { repo } and a raw block: {repo} {{ x }}" in body
    assert "Shouting: ACME/API" in body
    # The App's own parts follow the configured text.
    assert f"**What is wrong:** {v.message}" in body
    assert body.index("Repository acme/api fails") < body.index("**What is wrong:**")
    assert "{" + "policy}" not in body and "{{ policy }}" not in body

    # An unchanged template renders the same: the next scan changes nothing.
    posts, patches = st.count_requests("POST", "/repos"), st.count_requests("PATCH", "/repos")
    st.set_file("acme/api", "README.md", "touch\n")  # the repository changed, its issue did not
    await stack.deliver("push", hooks.commit_and_push(st, "acme/api", {"README.md": "again"}))
    await stack.drain()
    assert (st.count_requests("POST", "/repos"), st.count_requests("PATCH", "/repos")) == \
        (posts, patches)


async def test_a_template_that_reaches_for_attributes_is_refused_and_the_last_config_stays(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": CONFIG, "AGENTS.md": "x"}},
        {"name": "api", "files": {}},
    ])
    await stack.deliver("installation", hooks.installation(st, inst))
    await stack.drain()
    first = open_issues(st, "acme/api")["Require AGENTS.md"]

    evil = CONFIG.replace("Shouting: {{ repo | upper }}",
                          "{{ repo.__class__.__mro__[1].__subclasses__() }}")
    push = hooks.commit_and_push(st, "acme/.github", {"config.yaml": evil})
    await stack.deliver("push", push)
    await stack.drain()

    row = await stack.installation(inst.id)
    assert row is not None and row.config_status == "invalid"
    line = next(i for i, text in enumerate(evil.splitlines(), 1) if "__subclasses__" in text)
    assert f"config.yaml:{line}: policies[0].issue_details.body:" in (row.config_error or "")
    assert "not allowed" in (row.config_error or "")
    # Nothing of it ran: the issue is still the one the valid config wrote.
    assert open_issues(st, "acme/api")["Require AGENTS.md"].body == first.body
    assert "__subclasses__" not in (first.body or "") and "<class" not in (first.body or "")


# ----------------------------------------------------------------------------- config errors
def test_an_unknown_placeholder_is_a_config_error_with_its_line() -> None:
    (title_error,) = config_errors(policy_with('      title: "Fix {repository} now"\n'))
    assert title_error.startswith("config.yaml:6: policies[0].issue_details.title: ")
    assert "unknown placeholder {repository}" in title_error
    assert "{repo}, {policy}, {message}, {details}, {dashboard_url}" in title_error

    text = policy_with("      body: |\n        Hello {repo},\n\n        see {dashbaord_url}\n")
    (body_error,) = config_errors(text)
    # The body's fourth line is the file's ninth: the exact line, not the key's.
    assert body_error.startswith("config.yaml:9: policies[0].issue_details.body: ")
    assert "unknown placeholder {dashbaord_url} on template line 3" in body_error

    (jinja_name,) = config_errors(policy_with('      title: "{{ config }}"\n'))
    assert "unknown placeholder {config}" in jinja_name


@pytest.mark.parametrize("template, refused", [
    ("{{ repo.__class__ }}", "attribute and item access"),
    ("{{ repo['x'] }}", "attribute and item access"),
    ("{{ range(10) }}", "calling a function"),
    ("{{ lipsum() }}", "calling a function"),
    ("{{ message * 1000000 }}", "mul"),
    ("{{ repo | attr('__class__') }}", "filter 'attr'"),
    ("{% for c in repo %}{{ c }}{% endfor %}", "for"),
    ("{% set repo = 'x' %}", "assign"),
    ("{% import 'os' as os %}", "import"),
    ("{{ repo", "template syntax error"),
])
def test_code_and_attribute_access_are_config_errors(template: str, refused: str) -> None:
    with pytest.raises(TemplateProblem) as info:
        check_template(template)
    assert refused in str(info.value)
    (error,) = config_errors(policy_with(f"      title: |-\n        {template}\n"))
    assert error.startswith("config.yaml:7: policies[0].issue_details.title:")
    assert refused in error


def test_single_braces_become_jinja_only_outside_jinja_and_only_for_bare_names() -> None:
    assert to_jinja("{repo}") == "{{ repo }}"
    assert to_jinja("{{repo}} {{ repo }}") == "{{repo}} {{ repo }}"
    assert to_jinja('{"a": {"b": 1}} { repo } {repo-x} {1}') == \
        '{"a": {"b": 1}} { repo } {repo-x} {1}'
    assert to_jinja('{{ "{repo}" }}') == '{{ "{repo}" }}'
    assert to_jinja("{% raw %}{repo}{% endraw %}{repo}") == \
        "{% raw %}{repo}{% endraw %}{{ repo }}"
    values = {"repo": "acme/api", "policy": "P", "message": "M", "details": "",
              "dashboard_url": ""}
    assert render_template("{% if details %}D{% else %}none{% endif %} {repo}", values) == \
        "none acme/api"


def test_rendering_is_sandboxed_even_past_validation() -> None:
    # Validation refuses attribute access; the environment refuses it again.
    assert isinstance(issue_text._ENV, SandboxedEnvironment)
    with pytest.raises(SecurityError):
        issue_text._ENV.from_string("{{ repo.__class__.__mro__ }}").render(repo="x")
    with pytest.raises(TemplateProblem):
        render_template("{{ repo.__init__.__globals__ }}", {"repo": "x"})
