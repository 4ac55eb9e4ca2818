"""One generic registry for adapters, statistics, formats and commands.

Entries are registered with a decorator or lazily as "module:attr" strings, so
importing the registry does not import every implementation. Unknown names get
a "did you mean" error listing the allowed set.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # e.g. "adapter", used in error messages
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | None:
        """`@reg.register("x")` on a definition, or `reg.register("x", "pkg.mod:attr")`."""
        if obj is not None:
            self._add(name, obj)
            return None

        def deco(o: T) -> T:
            self._add(name, o)
            return o

        return deco

    def _add(self, name: str, obj: T | str) -> None:
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = (
                f"did you mean {', '.join(close)}?" if close else f"choose one of: {', '.join(self.names())}"
            )
            raise UserError(f"unknown {self.what} {name!r}", hint)
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
