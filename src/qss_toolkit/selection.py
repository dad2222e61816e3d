"""Choosing registry entries by name (targets, scenarios, sections): one rule for all of them.

Names given on the command line are looked up in a registry; duplicates are dropped (the first
mention keeps its place), none means every entry, and an unknown name is a usage error that
suggests the nearest known one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from qss_toolkit.errors import ConfigurationError

T = TypeVar("T")


def suggestion(name: str, known: Iterable[str]) -> str:
    """`did you mean X? ` for the known name nearest to `name`, or "" when none is near."""
    near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean {near[0]}? " if near else ""


def select(what: str, names: Sequence[str] | None, registry: Mapping[str, T]) -> list[T]:
    """The entries of `registry` named by `names` (every entry when there are none).

    `what` names the kind of entry in the error ("smoke target", "scenario").
    """
    if not names:
        return list(registry.values())
    for name in names:
        if name not in registry:
            raise ConfigurationError(
                f"unknown {what} {name!r}",
                hint=f"{suggestion(name, registry)}choose from {', '.join(registry)}",
            )
    return [registry[name] for name in dict.fromkeys(names)]
