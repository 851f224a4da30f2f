"""Provenance records and atomic file output.

Every file drcnet writes carries the package version, the git commit of the
source tree, the configuration and the random seed; every file is written under
a temporary name and renamed into place, so a killed run never leaves a
half-written output behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import glob
import json
import os
import platform
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@functools.cache
def package_version() -> str:
    """The installed drcnet version (``importlib.metadata``), ``"0.0.0+unknown"`` from a bare source tree.

    Looked up on first use: ``importlib.metadata`` costs ~70 ms of a command's start-up.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("drcnet")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+unknown"


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
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
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
        "version": package_version(),
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


_LIVE: set[Path] = set()
"""Temporaries of :func:`atomic_path` being written now (by any thread of this process)."""
_LIVE_LOCK = threading.Lock()


def part_pattern(final: Path) -> str:
    """The glob of :func:`atomic_path`'s temporaries for ``final``: ``.<name>.<8 random characters>.part``."""
    return f".{glob.escape(final.name)}.{'[a-z0-9_]' * 8}.part"


def remove_stale_parts(final: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries that an earlier, killed write of ``final`` left beside it.

    Only ``.<name of final>.<8 random characters>.part`` files are touched, and none that this
    process is writing now.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    with _LIVE_LOCK:
        live = set(_LIVE)
    for p in final.parent.glob(part_pattern(final)):
        if p not in live and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _make_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; return the folders it created, deepest first."""
    created = []
    p = folder
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target folder; rename it to ``final`` on success.

    The file gets the mode an ordinary ``open()`` would give it (``0o666`` less the umask), not
    the ``0o600`` of a temporary file, so shared survey outputs stay readable by the group.
    Temporaries of ``final`` left by an earlier, killed write are removed first
    (:func:`remove_stale_parts`). On any exception (``KeyboardInterrupt`` and the CLI's SIGTERM
    included) the temporary file is removed, so are the folders this call created if they are
    empty, and ``final`` is untouched.

    Raises
    ------
    IsADirectoryError
        ``final`` is an existing folder (named, not the temporary).
    FileExistsError
        ``final`` is a device, pipe or socket (``/dev/null``): the rename would replace it.
    OSError
        The folder cannot be made or written (``PermissionError`` ...): the message names ``final``.
    """
    final = Path(final)
    if final.is_dir():
        raise IsADirectoryError(f"{final}: is an existing folder; cannot write a file there")
    if final.exists() and not final.is_file():
        raise FileExistsError(
            f"{final}: is a device, pipe or socket, not a file; the output is renamed over the name and would "
            "replace it: give the path of a file to write"
        )
    try:
        created = _make_parents(final.parent)
        remove_stale_parts(final)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    except OSError as err:  # name the output, not the temporary
        raise type(err)(
            f"{final}: cannot write a file in {final.parent} ({err.strerror or err}); choose a folder you can write to"
        ) from err
    os.close(fd)
    tmp = Path(tmp_name)
    with _LIVE_LOCK:
        _LIVE.add(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for d in created:  # deepest first; a folder something else wrote into stays
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(tmp)


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
