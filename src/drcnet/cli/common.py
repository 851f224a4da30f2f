"""Helpers shared by the CLI command modules: error reporting and data-location options."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

err_console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line
F = TypeVar("F", bound=Callable[..., Any])

# errors a user can fix: shown as one clear line, no traceback
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, LookupError, RuntimeError)


def friendly_errors(func: F) -> F:
    """Turn user-fixable exceptions into a one-line message and exit status 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except USER_ERRORS as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=2) from exc

    return wrapper  # type: ignore[return-value]


def resolve_libraries(library: list[Path] | None) -> list[Path]:
    """Library folders from ``--library``, else ``$DRCNET_DATA/spectral_libraries/pyhammer``.

    Raises
    ------
    FileNotFoundError
        Naming the path that does not exist.
    """
    if library:
        missing = [p for p in library if not p.exists()]
        if missing:
            raise FileNotFoundError(f"library path {missing[0]} does not exist; pass a library folder or file")
        return library
    from drcnet.paths import data_root

    default = data_root() / "spectral_libraries" / "pyhammer"
    if not default.is_dir():
        raise FileNotFoundError(f"no --library given and the default {default} does not exist")
    return [default]


def load_fgk_templates(libs: list[Path], console: Console, all_classes: bool = False) -> Any:
    """Load the F/G/K templates of ``libs`` (every class with ``all_classes``, for ``--other``), printing
    each library warning (bad file, unknown labels) as a line."""
    import warnings

    from drcnet.library import LibraryWarning, load_templates

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LibraryWarning)
        result = load_templates(libs, classes=None if all_classes else ("F", "G", "K"))
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}")
    return result


def is_interactive() -> bool:
    """True when stderr is a terminal (progress bars on)."""
    return sys.stderr.isatty()
