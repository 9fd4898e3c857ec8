"""The organization's `config.yaml`: strict parsing into frozen, typed models.

`parse_config(text)` returns an `OrgConfig` or raises `ConfigError`, whose `problems` list
every problem sorted by line; each prints as `config.yaml:LINE: PATH: MESSAGE`. The file
format is documented in docs/configuration.md.
"""

from __future__ import annotations

from app.config.loader import ConfigError, ConfigProblem, parse_config
from app.config.models import (
    ACTION_NAMES,
    ENFORCED_ACTIONS,
    AccessControl,
    BlockPrsDetails,
    IssueDetails,
    OrgConfig,
    PolicyConfig,
    PrCommentDetails,
)

__all__ = [
    "ACTION_NAMES",
    "ENFORCED_ACTIONS",
    "AccessControl",
    "BlockPrsDetails",
    "ConfigError",
    "ConfigProblem",
    "IssueDetails",
    "OrgConfig",
    "PolicyConfig",
    "PrCommentDetails",
    "parse_config",
]
