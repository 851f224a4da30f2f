"""The rule every writing command follows for its outputs, checked before any work.

Every input and output path is resolved first (``~``, ``..`` and symbolic links, :func:`os.path.realpath`;
an existing output that is another name of an input file, a hard link, is found by device and inode);
then a command stops with one line naming both paths (exit status 2 in the CLI) when

* an output is one of the files the command reads (``--out`` over a raw frame, the fiber map, the dataset
  being read, the run's weights);
* an output is, or lies inside, a folder the command reads as a whole (a library folder); an output that
  *is* an exposure folder or night root it reads is refused too, but a new file inside one, beside the
  frames, is allowed;
* two outputs of one command are the same path;
* an output exists and is of the wrong kind (a folder where a file goes, a file where a folder goes, a
  device, pipe or socket such as ``/dev/null`` where a file goes: the atomic rename would replace it), or
  its parent is a file, or the folder it goes in is not writable;
* an output exists and the command does not replace outputs (``must_not_exist``).

Paths only: nothing is read or written here. The CLI modules call :func:`check_outputs`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Output", "OutputError", "check_outputs", "real"]


class OutputError(ValueError):
    """An output path breaks the rule (the message names the path, the option and what to do)."""


def real(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` expanded and every symbolic link and ``..`` resolved (it need not exist)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


@dataclass(frozen=True)
class Output:
    """One output of a command.

    Attributes
    ----------
    path
        The path the user gave (shown in messages as given).
    option
        The option that names it (``--out``, ``--qa``), shown in messages.
    kind
        ``"file"`` or ``"folder"``.
    must_not_exist
        Refuse an existing output (commands that never replace one).
    replaces_folder
        A folder output that the command empties or replaces as a whole (``train --overwrite``): no input
        may lie inside it.
    """

    path: str | os.PathLike[str]
    option: str = "--out"
    kind: Literal["file", "folder"] = "file"
    must_not_exist: bool = False
    replaces_folder: bool = False


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file: two names of one file (a hard link) share it; None otherwise."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st.st_ino else None


def _inside(child: Path, folder: Path) -> bool:
    return child == folder or folder in child.parents


def check_outputs(
    outputs: Sequence[Output | None],
    files: Iterable[str | os.PathLike[str]] = (),
    folders: Iterable[str | os.PathLike[str]] = (),
    trees: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Refuse outputs that would replace an input, clash with each other, or are of the wrong kind.

    Parameters
    ----------
    outputs
        The command's outputs (``None`` entries, options not given, are skipped).
    files
        Every file the command reads.
    folders
        Folders read as a whole (every file in them is an input): no output may be one or lie inside one.
    trees
        Folders whose files the command reads (an exposure folder, a night root): no output may be one of
        them; a new file inside one is allowed (its existing input files are listed in ``files``).

    Raises
    ------
    OutputError
        One line naming the output (and its option) and, for a clash, the input.
    """
    read = {real(f): Path(f) for f in files}
    same_file = {_identity(r): f for r, f in read.items() if _identity(r) is not None}
    whole = [(real(d), Path(d)) for d in folders]
    tree = {real(d): Path(d) for d in trees}
    seen: dict[Path, Output] = {}
    for out in outputs:
        if out is None:
            continue
        given, r = Path(out.path), real(out.path)
        # the input by its resolved path, or another name of the same file (a hard link)
        inp = read.get(r) or (same_file.get(_identity(r)) if r.is_file() else None)
        if inp is not None:
            raise OutputError(
                f"{given} ({out.option}) is the input file {inp} that this command reads; "
                f"writing it would replace the input: choose another {out.option}"
            )
        if r in tree:
            raise OutputError(
                f"{given} ({out.option}) is the folder {tree[r]} that this command reads; choose another {out.option}"
            )
        for rd, d in whole:
            if _inside(r, rd):
                raise OutputError(
                    f"{given} ({out.option}) is inside {d}, a folder this command reads as a whole; "
                    f"choose an {out.option} outside it"
                )
        if out.kind == "folder" and out.replaces_folder:
            for rf, f in read.items():
                if _inside(rf, r):
                    raise OutputError(
                        f"{given} ({out.option}) holds the input file {f} that this command reads; "
                        f"choose another {out.option}"
                    )
        if r in seen:
            raise OutputError(
                f"{given} ({out.option}) is also {seen[r].path} ({seen[r].option}); give each output its own path"
            )
        seen[r] = out
        if r.exists():
            if out.kind == "file" and r.is_dir():
                raise OutputError(f"{given}: {out.option} is an existing folder; give the file to write")
            if out.kind == "file" and not r.is_file():
                raise OutputError(
                    f"{given}: {out.option} is a device, pipe or socket, not a file; writing would replace it: "
                    "give the file to write"
                )
            if out.kind == "folder" and not r.is_dir():
                raise OutputError(
                    f"{given}: {out.option} must be a folder, but this is an existing file; choose another {out.option}"
                )
            if out.must_not_exist:
                raise OutputError(f"{given}: {out.option} already exists; choose another {out.option} or remove it")
        parent = r.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise OutputError(f"{given}: cannot write {out.option} there: {parent} is a file, not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(
                f"{given}: cannot write {out.option} there: the folder {parent} is not writable; "
                f"choose another {out.option}"
            )
