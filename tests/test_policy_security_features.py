"""security_features: secret scanning, push protection and Dependabot are on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import ConfigError, parse_config
from app.policies import REGISTRY
from app.policies.base import DOCS_URL, RepoSnapshot, SourceUnreadable
from app.policies.security_features import POLICY, SecurityFeaturesParams
from app.sources.base import Unreadable
from app.sources.security import SecurityFeatures


def snap(view: SecurityFeatures | Unreadable) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        data={"security": view})


def features(scanning: bool | None = True, push: bool | None = True, alerts: bool = True,
             updates: bool | None = True) -> SecurityFeatures:
    return SecurityFeatures(secret_scanning=scanning, secret_scanning_push_protection=push,
                            dependabot_alerts=alerts, dependabot_security_updates=updates)


def params(**values: Any) -> SecurityFeaturesParams:
    return SecurityFeaturesParams.model_validate(values)


def test_registered_with_a_valid_example() -> None:
    assert REGISTRY["security_features"] is POLICY
    example = SecurityFeaturesParams.model_validate(POLICY.example)
    assert POLICY.needs_for(example).sources == {"security"}


def test_everything_on_passes() -> None:
    result = POLICY.evaluate(snap(features()), params())
    assert result.passed and "\n" not in result.message
    assert result.details == {"enabled": ["secret_scanning", "secret_scanning_push_protection",
                                          "dependabot_alerts", "dependabot_security_updates"],
                              "missing": [], "unavailable": []}


def test_defaults_check_every_feature() -> None:
    result = POLICY.evaluate(snap(features(updates=False)))
    assert not result.passed
    assert result.details["missing"] == ["dependabot_security_updates"]


def test_missing_features_are_listed_with_where_to_enable_them() -> None:
    result = POLICY.evaluate(snap(features(scanning=False, push=False, alerts=False)), params())
    assert not result.passed
    msg = result.message
    assert "`acme/api`" in msg
    assert "Secret scanning, Push protection, Dependabot alerts." in msg
    assert "Settings → Code security" in msg
    assert "- **Push protection** (under Secret scanning; turn that on first)" in msg
    assert "Dependabot security updates" not in msg
    assert msg.endswith(f"See {DOCS_URL}#security_features.")
    assert result.details["missing"] == ["secret_scanning", "secret_scanning_push_protection",
                                         "dependabot_alerts"]


def test_false_params_are_not_checked() -> None:
    view = features(scanning=False, push=False)
    p = params(secret_scanning=False, secret_scanning_push_protection=False)
    result = POLICY.evaluate(snap(view), p)
    assert result.passed
    assert "Secret scanning" not in result.message
    assert result.details["enabled"] == ["dependabot_alerts", "dependabot_security_updates"]


def test_unavailable_feature_passes_but_is_named() -> None:
    result = POLICY.evaluate(snap(features(scanning=None, push=None)), params())
    assert result.passed and "\n" not in result.message
    assert "Not available for this repository" in result.message
    assert "Secret scanning, Push protection" in result.message
    assert result.details["unavailable"] == ["secret_scanning",
                                             "secret_scanning_push_protection"]


def test_unavailable_and_missing_together() -> None:
    result = POLICY.evaluate(snap(features(scanning=None, push=None, alerts=False)), params())
    assert not result.passed
    assert "Not available for this repository" in result.message
    assert result.details["missing"] == ["dependabot_alerts"]
    assert result.message.endswith(f"See {DOCS_URL}#security_features.")


def test_nothing_offered_passes_and_says_so() -> None:
    view = features(scanning=None, push=None, updates=None)
    result = POLICY.evaluate(snap(view), params(dependabot_alerts=False))
    assert result.passed and "no required security feature is offered" in result.message


def test_unreadable_source_is_unknown() -> None:
    snapshot = snap(Unreadable("GitHub did not show the security settings"))
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(snapshot, params())
    result = POLICY.judge(snapshot, params())
    assert result.unknown and "did not show the security settings" in result.message


@pytest.mark.parametrize(("values", "fragment"), [
    ({"secret_scanning": False, "secret_scanning_push_protection": False,
      "dependabot_alerts": False, "dependabot_security_updates": False}, "nothing is checked"),
    ({"secret_scanning": "yes"}, "valid boolean"),
    ({"code_scanning": True}, "Extra inputs"),
])
def test_bad_params_are_rejected(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        SecurityFeaturesParams.model_validate(values)


CONFIG = """\
policies:
  - name: Security on
    type: security_features
    action: log-only
    params:
      dependabot_security_updates: {value}
"""


def test_config_params_and_errors_with_their_line() -> None:
    (entry,) = parse_config(CONFIG.format(value="false")).policies
    assert entry.params == params(dependabot_security_updates=False)
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(value="sometimes"))
    assert "config.yaml:6:" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(value="false").replace("dependabot_security_updates",
                                                          "dependabot_updates"))
    assert "config.yaml:6:" in str(info.value) and "dependabot_updates" in str(info.value)
