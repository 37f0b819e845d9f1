"""A registry of name -> factory whose entries may be "module:attribute" strings, imported on first use.

Executors, targets and routers register by dotted path so that `import engine.deploy` or the
scheduler does not import docker, paramiko or kubernetes: the module behind a kind is imported when
that kind is first used. In the base layer: the pipeline and deploy packages both use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from engine.errors import InputError

__all__ = ["LazyRegistry"]

T = TypeVar("T")


class LazyRegistry(Mapping[str, T], Generic[T]):
    """name -> factory; a value given as "package.module:Name" is imported when first looked up."""

    def __init__(self, what: str, entries: Mapping[str, T | str]) -> None:
        self._what = what
        self._entries: dict[str, T | str] = dict(entries)

    def register(self, name: str, factory: T | str) -> None:
        """Add or replace the factory for `name` (a plugin, or a fake in a test)."""
        self._entries[name] = factory

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        """The factory for `name`.

        Raises:
            InputError: no such kind (the message lists the known ones).
        """
        try:
            entry = self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise InputError(f"unknown {self._what} kind {name!r} (known: {known})") from None
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            value: T = getattr(importlib.import_module(module), attr)
            self._entries[name] = value
            return value
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
