"""Safety of ``drcnet frames simulate`` on disk: no silent replacement, no orphan workers, no stale temporaries.

* :func:`refuse_existing_exposure` -- an exposure already in ``--out`` is replaced only with ``--overwrite``;
* :func:`remove_stale_parts` -- temporaries that a killed run left (``.<name>.<random>.part``, written by
  :func:`drcnet.provenance.atomic_path` for the exposure's own file names) are removed by the next run;
* :func:`die_with_parent` -- a worker process ends as soon as the process that started it is gone (SIGKILL
  of the parent cannot be caught, so the worker must notice it itself).
"""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

from drcnet.instrument.lamost import parse_raw_name

_PART_RE = re.compile(r"^\.(?P<final>.+)\.[A-Za-z0-9_]+\.part$")
_OWN_SIDECARS = re.compile(r"^((fibermap|truth)-.+-sp\d+\.(fits|h5)|lrs_catalogue\.csv)$")


def own_output(name: str) -> bool:
    """True for a file name that ``drcnet frames simulate`` writes (raw frame, fiber map, truth sidecar)."""
    return parse_raw_name(name) is not None or bool(_OWN_SIDECARS.match(name))


def existing_exposure_files(folder: Path) -> list[Path]:
    """The files of a simulated exposure already in ``folder`` (empty when none or no folder)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file() and own_output(p.name)]
    for sub in folder.iterdir():  # several exposures: one subfolder per plan
        if sub.is_dir():
            found += [p for p in sub.iterdir() if p.is_file() and own_output(p.name)]
    return sorted(found)


def refuse_existing_exposure(out: str | Path, overwrite: bool) -> None:
    """Stop before any work when ``out`` already holds an exposure (or is a file) and ``overwrite`` is False.

    Raises
    ------
    FileExistsError
        Naming the folder, what it holds, and ``--overwrite``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: --out must be a folder for the exposure, but this is an existing file")
    found = existing_exposure_files(out)
    if found and not overwrite:
        raise FileExistsError(
            f"{out}: already holds an exposure ({len(found)} files, e.g. {found[0].name}); "
            "pass --overwrite to replace it, or choose another --out"
        )


def remove_stale_parts(folder: str | Path) -> list[Path]:
    """Remove the temporaries a killed write left in ``folder``: ``.<name>.<random>.part`` of drcnet's own names.

    Only files whose final name is one ``drcnet frames simulate`` writes are touched;
    any other ``.part`` file (another program's, or the user's) is left alone.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _PART_RE.match(p.name)
        if m and p.is_file() and own_output(m["final"]):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def die_with_parent(poll_s: float = 0.5) -> None:
    """Make the calling (worker) process end when its parent process is gone.

    On Linux the kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``);
    everywhere a daemon thread also polls the parent's pid and ends the process
    when it changes.
    """
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        import time

        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
