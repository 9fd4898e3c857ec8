"""The config's JSON Schema, generated from the models (`python -m app config-schema`), for
editors: `# yaml-language-server: $schema=<url of the printed file>` at the top of
config.yaml gives completion and inline errors.

The parser stays the authority (it also checks what a schema cannot say: cross references,
templates, regular expressions); the schema is a strict subset of what it accepts, so an
editor never marks a valid file."""

from __future__ import annotations

import json
import re
from typing import Any

from app.config.models import ACTION_NAMES, OrgConfig
from app.policies import REGISTRY

SCHEMA_ID = ("https://github.com/policy-enforcer/policy-enforcer/blob/main/docs/"
             "config.schema.json")


def _prefixed(schema: dict[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move a sub-schema's own `$defs` under names unique to it, fixing its references."""
    defs = schema.pop("$defs", {})
    text = re.sub(r'"#/\$defs/([^"]+)"', lambda m: f'"#/$defs/{prefix}{m.group(1)}"',
                  json.dumps(schema))
    moved = {f"{prefix}{name}": json.loads(re.sub(
        r'"#/\$defs/([^"]+)"', lambda m: f'"#/$defs/{prefix}{m.group(1)}"', json.dumps(d)))
        for name, d in defs.items()}
    return json.loads(text), moved


def config_schema() -> dict[str, Any]:
    schema = OrgConfig.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    policy = defs["PolicyConfig"]
    props = policy["properties"]
    # Either spelling of an action name parses (create_issue reads as create-issue).
    names = sorted({*ACTION_NAMES, *(a.replace("-", "_") for a in ACTION_NAMES)})
    props["action"] = {
        "description": "One action, or a list of them.",
        "anyOf": [{"enum": names},
                  {"type": "array", "items": {"enum": names}, "minItems": 1,
                   "uniqueItems": True}]}
    props["type"] = {"description": "The policy type (docs/configuration.md#policy-types).",
                     "enum": list(REGISTRY)}
    props["params"] = {"description": "The type's parameters.", "type": "object"}
    rules = []
    for name, impl in REGISTRY.items():
        params, moved = _prefixed(impl.Params.model_json_schema(mode="validation"),
                                  f"params_{name}__")
        defs.update(moved)
        defs[f"params_{name}"] = params
        rules.append({"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                      "then": {"properties": {"params": {"$ref": f"#/$defs/params_{name}"}}}})
    policy["allOf"] = rules
    # `tier: critical` is short for `tier: [critical]`.
    for model in ("PolicyConfig", "Defaults"):
        defs[model]["properties"]["custom_properties"] = {
            "description": "Custom property name -> accepted values (any of).",
            "anyOf": [{"type": "object", "additionalProperties": {"anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1}]}},
                {"type": "null"}]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **schema}
