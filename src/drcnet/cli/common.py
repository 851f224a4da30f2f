"""Helpers shared by the CLI command modules: error reporting and data-location options."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch queue's time limit) turned into an exception, so writes clean up like Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated("SIGTERM")


def _default_sigterm_in_child() -> None:
    # a forked worker (multiprocessing's fork pools) inherits the handler above; Pool.terminate() ends its
    # workers with SIGTERM, which would then print a Terminated traceback from each idle worker of a run
    # that succeeded: the worker dies quietly on SIGTERM instead, as it would without the CLI
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_sigterm_in_child)


EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
"""Exit status after Ctrl-C (SIGINT) and SIGTERM: 128 + the signal number, as a shell reports it."""


def friendly_errors(func: F) -> F:
    """Turn user-fixable exceptions into a one-line message and exit status 2; Ctrl-C and SIGTERM into a line
    and exit status 130 / 143 after the partial files are removed (:func:`drcnet.provenance.atomic_path`)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            with warnings_as_lines(err_console):
                return func(*args, **kwargs)
        except typer.Exit:
            raise
        except USER_ERRORS as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=2) from exc
        except KeyboardInterrupt as exc:
            term = isinstance(exc, Terminated)
            err_console.print(
                f"[bold red]stopped:[/] {'terminated (SIGTERM)' if term else 'interrupted (Ctrl-C)'}; "
                "partial files removed, no earlier output replaced"
            )
            raise typer.Exit(code=EXIT_TERMINATED if term else EXIT_INTERRUPTED) from exc
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def warnings_as_lines(console: Any) -> Iterator[None]:
    """Print the warnings raised while the block runs as ``warning: MESSAGE`` lines (each once, as they come),
    instead of Python's ``file:line: UserWarning:`` form with a source line. Enter it in the main thread."""
    import warnings

    seen: set[str] = set()

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            console.print(f"[yellow]warning:[/] {text}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def run_inputs(run_dir: str | Path | None) -> list[Path]:
    """The files of a run folder that loading a model reads (weights, run.json, calibration), or the file itself.

    ``run_dir`` may be a shipped model's name (``drcnet-survey``) or ``None`` (the default model): both are
    resolved to the package's folder (:func:`drcnet.models.run_folder.resolve_run`), so an ``--out`` onto
    a shipped model's weights is refused like one onto a run folder's. A name that is no shipped model is
    returned as given (the command then names it).
    """
    from drcnet.models.run_folder import resolve_run

    try:
        run_dir = resolve_run(run_dir)
    except (FileNotFoundError, KeyError, ValueError):
        return []  # nothing there to replace; the command names the missing run
    if not run_dir.is_dir():
        return [run_dir]
    return [
        p
        for p in run_dir.iterdir()
        if p.is_file()
        and (p.suffix == ".safetensors" or p.name in ("run.json", "calibration.json", "config.json", "EXPORT.json"))
    ]


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
