"""A name -> factory table for the harness's pluggable parts (mask generators): one registration
decorator, one builder whose unknown-name error lists the known names, built-ins imported on first use."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Factories of one `kind` kept in `table`; `load_builtin` imports the modules that register the
    built-in ones (their decorators fill the table as a side effect)."""

    def __init__(self, kind: str, table: MutableMapping[str, F], load_builtin: Callable[[], None]):
        self.kind, self.table, self.load_builtin = kind, table, load_builtin

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: `factory` becomes buildable as `name` (registering a name twice is an error)."""

        def add(factory: F) -> F:
            if name in self.table:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self.table[name] = factory
            return factory

        return add

    def names(self) -> list[str]:
        self.load_builtin()
        return sorted(self.table)

    def create(self, name: str, **kwargs: Any) -> Any:
        known = self.names()
        if name not in self.table:
            raise ValueError(f"unknown {self.kind} {name!r}; registered {self.kind}s: {known}")
        return self.table[name](**kwargs)
