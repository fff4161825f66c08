"""A typed registry: the names of one kind of part (a rating rule, a user variant, an A/B metric) and the entry
each name stands for. An entry is a frozen dataclass that owns its parameters, so adding a part is one entry
and one ``add`` line in the module that defines it; nothing else switches on the name.

An unknown name is a `UnknownName` (a ValueError) that names the kind and lists the known names, the one line
a CLI prints. ``add`` refuses a name that is already taken, so two parts never answer to one name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that no entry of the registry has."""


class Registry(Generic[T]):
    """Names -> entries of one ``kind`` (e.g. "rating rule"), in the order they were added."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name already taken is a ValueError. Returns ``entry``."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> T:
        """Take ``name`` out again (a test's temporary entry); an unknown name is `UnknownName`."""
        entry = self[name]
        del self._entries[name]
        return entry

    def check(self, name: str) -> str:
        """``name`` when registered, else `UnknownName` (for validators that keep the name, not the entry)."""
        self[name]
        return name

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())
