"""Lazy attributes for a package (PEP 562): a module or a re-exported name is imported on its first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping


def lazy_attributes(package: str, modules: Iterable[str] = (), exports: Mapping[str, Iterable[str]] | None = None
                    ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`: its `modules` (`pkg.name`) and the names `exports` gives
    ({module path relative to the package: names it re-exports}), each imported when first asked for."""
    modules = tuple(modules)
    where = {name: module for module, names in (exports or {}).items() for name in names}
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        if name in where:
            value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        elif name in modules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where, *modules})

    return __getattr__, __dir__
