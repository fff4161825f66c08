"""Old names of a renamed field, read with their meaning unchanged (issue 32: a config key or an event field)."""

from __future__ import annotations


def renamed(data, old: str, new: str):
    """``data`` with its key ``old`` renamed ``new`` when it is a mapping that has ``old``; giving both is a
    ValueError that names both. Anything else comes back as it is (pydantic reports it)."""
    if not isinstance(data, dict) or old not in data:
        return data
    if new in data:
        raise ValueError(f"give {new} or its old name {old}, not both")
    return {(new if k == old else k): v for k, v in data.items()}
