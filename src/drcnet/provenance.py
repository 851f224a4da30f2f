"""Provenance records and atomic file output.

Every file drcnet writes carries the package version, the git commit of the
source tree, the configuration and the random seed; every file is written under
a temporary name and renamed into place, so a killed run never leaves a
half-written output behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drcnet import __version__


def git_commit() -> str:
    """Return the git commit of the drcnet source tree, or ``"unknown"``.

    A ``-dirty`` suffix marks uncommitted changes, so an output never claims a
    commit whose code it was not made with.
    """
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def provenance(config: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """Build the provenance record stored with every output.

    Parameters
    ----------
    config
        The full configuration that produced the output (JSON-serialisable).
    seed
        The random seed, if the output depends on one.

    Returns
    -------
    dict
        ``package``, ``version``, ``git_commit``, ``created_utc``, ``python``,
        ``config`` and ``seed``.
    """
    return {
        "package": "drcnet",
        "version": __version__,
        "git_commit": git_commit(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "config": config or {},
        "seed": seed,
    }


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-creation mask (read without changing it for other threads)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target folder; rename it to ``final`` on success.

    The file gets the mode an ordinary ``open()`` would give it (``0o666`` less the umask), not
    the ``0o600`` of a temporary file, so shared survey outputs stay readable by the group.
    On any exception the temporary file is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, paths
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
