"""Helpers shared by the CLI command modules: error reporting and data-location options."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


class LazyConsole:
    """A ``rich.console.Console(stderr=True, soft_wrap=True)`` made on first use.

    ``rich`` costs ~40-70 ms of start-up; commands that never print through it (``drcnet --help``,
    usage errors) should not pay for it. Every attribute is forwarded to the real console.
    """

    def __init__(self) -> None:
        self._console: Any = None

    def real(self) -> Any:
        """The ``rich`` console itself (made now if needed), for APIs that need a real one."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line
        return self._console

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # private names and copy/pickle probes: not forwarded
            raise AttributeError(name)
        return getattr(self.real(), name)


err_console = LazyConsole()

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


def load_fgk_templates(libs: list[Path], console: Any, all_classes: bool = False) -> Any:
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


def add_command(app: typer.Typer, name: str, func: Callable[..., Any]) -> None:
    """Register ``func`` as command ``name`` of ``app``, listed in ``--help`` with its whole first paragraph.

    The help is click's plain formatter (see :mod:`drcnet.cli`), which would cut a command's summary at
    ~45 characters; an explicit ``short_help`` is shown whole (wrapped).
    """
    doc = (func.__doc__ or "").strip().split("\n\n")[0]
    app.command(name, short_help=" ".join(doc.split()) or None)(func)


def is_interactive() -> bool:
    """True when stderr is a terminal (progress bars on)."""
    return sys.stderr.isatty()
