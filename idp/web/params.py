"""The one reading of on/off values in query strings and forms (`?signed=1`, `force=1`, checkboxes)."""

from __future__ import annotations

TRUE_VALUES = frozenset({"1", "on", "true", "yes"})
FALSE_VALUES = frozenset({"0", "off", "false", "no"})


def flag(value: str | None) -> bool | None:
    """True or False for a recognised spelling (case-insensitive), None when absent or anything else."""
    if value is None:
        return None
    v = value.strip().lower()
    if v in TRUE_VALUES:
        return True
    if v in FALSE_VALUES:
        return False
    return None
