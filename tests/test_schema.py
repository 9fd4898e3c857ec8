"""The config's JSON Schema: generated from the models, published in docs/, and in agreement
with the parser on real configs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
from ruamel.yaml import YAML

from app.config.loader import parse_config
from app.config.schema import config_schema
from app.policies import REGISTRY

ROOT = Path(__file__).parents[1]
PUBLISHED = ROOT / "docs" / "config.schema.json"


def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_published_schema_is_current() -> None:
    # Regenerate with: python -m app config-schema > docs/config.schema.json
    assert json.loads(PUBLISHED.read_text()) == config_schema()


def test_the_command_prints_it() -> None:
    out = subprocess.run([sys.executable, "-m", "app", "config-schema"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == config_schema()


def test_every_type_example_validates_and_parses() -> None:
    v = validator()
    for name, impl in REGISTRY.items():
        cfg = {"policies": [{"name": name, "type": name, "action": "log-only",
                             **({"params": impl.example} if impl.example else {})}]}
        assert list(v.iter_errors(json.loads(json.dumps(cfg, default=str)))) == [], name
        parse_config(json.dumps(cfg, default=str))


def test_the_docs_examples_validate() -> None:
    """Every complete config in docs/configuration.md (a block with `policies:`) is valid
    for the parser and the schema alike."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
              if re.search(r"^policies:", b, re.M)]
    assert blocks
    v = validator()
    for block in blocks:
        parse_config(block)
        data = json.loads(json.dumps(YAML(typ="safe").load(block), default=str))
        assert [e.message for e in v.iter_errors(data)] == [], block[:200]


def test_the_schema_rejects_what_the_parser_rejects() -> None:
    v = validator()
    bad = [
        {"policies": [{"name": "a", "type": "nope", "action": "log-only"}]},
        {"policies": [{"name": "a", "type": "has_agents_md", "action": "explode"}]},
        {"policies": [{"name": "a", "type": "has_agents_md", "action": "log-only",
                       "params": {"x": 1}}]},
        {"policies": [], "exemptions": [{"repos": ["a"], "policies": ["a"]}]},
        {"policies": [], "unknown": 1},
    ]
    for data in bad:
        assert list(v.iter_errors(data)), data
