"""Stop requests for a running training loop (SIGTERM, batch-queue limits, torchrun).

A signal handler only calls :func:`request_stop`, which sets a flag; the loop calls
:func:`check_stop` after every step and validation batch and raises ``KeyboardInterrupt`` there.
Raising inside the handler itself is not reliable: the exception can land in a finaliser or a
weakref callback, where Python prints and drops it, and the run would go on.
"""

from __future__ import annotations

_STOP_REQUESTS: list[int] = []


def request_stop(signum: int) -> None:
    """Ask the running loop to stop at its next step (safe to call from a signal handler)."""
    _STOP_REQUESTS.append(int(signum))


def check_stop() -> None:
    """Raise ``KeyboardInterrupt("signal N")`` when a stop was requested."""
    if _STOP_REQUESTS:
        raise KeyboardInterrupt(f"signal {_STOP_REQUESTS[-1]}")


def clear_stop_requests() -> None:
    """Forget earlier requests (a new run starts)."""
    _STOP_REQUESTS.clear()
