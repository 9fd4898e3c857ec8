"""Find the one-module-per-item plugins of a package (policies, actions)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any


def discover(package: str, path: list[str], attribute: str) -> Iterator[Any]:
    """Yield `attribute` of every module in the package that defines it (base excluded)."""
    for info in pkgutil.iter_modules(path):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        item = getattr(module, attribute, None)
        if item is not None:
            yield item
