"""One generic registry, used for bases, activations, models, tasks, targets and grids."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from iatrun.errors import IatrunError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name and any declared properties."""

    name: str
    obj: T
    props: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A name → object map that refuses duplicates and explains unknown names."""

    def __init__(self, kind: str):
        self.kind = kind  # what the entries are, for messages: "basis", "model", ...
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **props: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` with ``props``."""

        def deco(obj: T) -> T:
            self.add(name, obj, **props)
            return obj

        return deco

    def add(self, name: str, obj: T, **props: Any) -> None:
        if name in self._entries:
            raise IatrunError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, dict(props))

    def remove(self, name: str) -> None:
        """Unregister ``name`` (plugins and tests that register temporarily)."""
        self.entry(name)
        del self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise IatrunError(self.unknown_message(name)) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise the unknown-name error."""
        self.entry(name)
        return name

    def unknown_message(self, name: object) -> str:
        known = ", ".join(self.names())
        hint = difflib.get_close_matches(str(name), self.names(), n=1)
        tip = f"; did you mean {hint[0]!r}?" if hint else ""
        return f"unknown {self.kind} {name!r} (known: {known}){tip}"

    def names(self, **where: Any) -> list[str]:
        """Names in registration order, optionally only those whose props match ``where``."""
        return [n for n, e in self._entries.items() if all(e.props.get(k) == v for k, v in where.items())]

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
