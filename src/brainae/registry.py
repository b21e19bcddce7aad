"""A tiny registry: a decorator puts each builder in a dict by name (models now; noises, denoisers later).

A new model variant is one file that decorates its builder with ``@register_model("name")`` plus
one import line in ``brainae/models/__init__.py``; it then appears in ``--help`` and the report.
"""
from __future__ import annotations

from typing import Callable

from brainae.errors import BrainaeError

_REGISTRIES: dict[str, dict[str, Callable]] = {}


def register(kind: str, name: str) -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        table = _REGISTRIES.setdefault(kind, {})
        if name in table:
            raise ValueError(f"{kind} '{name}' registered twice")
        table[name] = fn
        return fn

    return deco


def get(kind: str, name: str) -> Callable:
    table = _REGISTRIES.get(kind, {})
    if name not in table:
        raise BrainaeError(f"unknown {kind} '{name}' (choose from: {', '.join(sorted(table)) or 'none'})")
    return table[name]


def names(kind: str) -> list[str]:
    return sorted(_REGISTRIES.get(kind, {}))


def register_model(name: str) -> Callable[[Callable], Callable]:
    return register("model", name)
