"""Package exports imported on first use (PEP 562), so importing a package loads nothing."""

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]
                 ) -> tuple[Callable[[str], Any], list[str]]:
    """A module `__getattr__` resolving each exported name from its module, and `__all__`.

    Args:
        package: the package's `__name__`, for error messages.
        exports: exported name -> module that defines it (a name equal to its module's last
            part, e.g. "features" -> "recs.features", exports the module itself).

    Example:
        __getattr__, __all__ = lazy_exports(__name__, {"Recommender": "serving.online.recommender"})
    """
    def __getattr__(name: str) -> Any:  # noqa: N807  (the PEP 562 hook)
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name])
        return module if exports[name].rsplit(".", 1)[-1] == name else getattr(module, name)

    return __getattr__, sorted(exports)
