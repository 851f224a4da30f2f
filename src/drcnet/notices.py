"""Warnings that survive threads: a per-thread collector and a quiet block that leaves other threads alone.

:class:`warnings.catch_warnings` swaps the process-wide filter list and ``showwarning`` on entry and puts
back what it saw on exit (Python 3.11). Two threads in such blocks at once lose each other's warnings,
record them under the wrong thread, or leave the filters of one block in force after both have ended.
The reduction runs the two arms in two threads, so it uses these instead:

* :func:`collect` -- messages sent with :func:`notify` by *this* thread go into a list (per call, per
  thread; nothing process-wide changes);
* :func:`notify` -- to the calling thread's innermost :func:`collect` of a matching category, else an
  ordinary :func:`warnings.warn`;
* :func:`quiet` -- ignore a category of warnings (numpy's all-NaN slices) while a block runs: a filter is
  added once while any thread is inside such a block and removed when the last one leaves (never a
  snapshot put back), so no thread's block undoes another's.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

__all__ = ["collect", "notify", "quiet"]

_local = threading.local()
_lock = threading.Lock()
_quiet: dict[type[Warning], tuple[int, tuple]] = {}


@contextlib.contextmanager
def collect(category: type[Warning] = Warning) -> Iterator[list[str]]:
    """Collect the messages that :func:`notify` sends of ``category`` in the calling thread while the block runs.

    Yields
    ------
    list of str
        The messages, in order (the list fills as the block runs).
    """
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    sink: list[str] = []
    stack.append((category, sink))
    try:
        yield sink
    finally:
        stack.remove((category, sink))


def notify(message: str, category: type[Warning] = UserWarning, stacklevel: int = 2) -> None:
    """Send a warning to the calling thread's collector (:func:`collect`), or warn as usual when there is none."""
    for cat, sink in reversed(getattr(_local, "stack", None) or ()):
        if issubclass(category, cat):
            sink.append(message)
            return
    warnings.warn(message, category, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def quiet(category: type[Warning] = RuntimeWarning) -> Iterator[None]:
    """Ignore warnings of ``category`` while the block runs (in every thread: the filter list is process-wide).

    Safe with threads: the filter is added when the first block starts and removed, by identity, when the
    last one ends; the rest of the filter list is never replaced.
    """
    with _lock:
        count, entry = _quiet.get(category, (0, ()))
        if count == 0:
            entry = ("ignore", None, category, None, 0)
            warnings.filters.insert(0, entry)  # type: ignore[attr-defined]
            warnings._filters_mutated()  # type: ignore[attr-defined]
        _quiet[category] = (count + 1, entry)
    try:
        yield
    finally:
        with _lock:
            count, entry = _quiet[category]
            if count == 1:
                del _quiet[category]
                for i, f in enumerate(warnings.filters):  # type: ignore[attr-defined]
                    if f is entry:
                        del warnings.filters[i]  # type: ignore[attr-defined]
                        break
                warnings._filters_mutated()  # type: ignore[attr-defined]
            else:
                _quiet[category] = (count - 1, entry)
