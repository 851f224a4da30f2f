"""Bookkeeping of a night run: which exposures there are, what each task read, what may be skipped.

A *night root* is any folder tree holding exposure folders in the layout ``drcnet frames
simulate`` writes (raw frames ``r[obfa]-XX[br]-PLANID-RUN-MJD.fit`` and fiber maps side by side).
:func:`discover_tasks` walks it and returns one :class:`TaskSpec` per (exposure folder,
spectrograph[, science run]); nothing is opened, only file names are read, so one broken
spectrograph becomes one failed task, never a failed discovery.

Each task's inputs are fingerprinted (:func:`input_checksums`: SHA-256, size, mtime of every
raw frame and fiber map of that spectrograph); :func:`can_skip` says whether a finished result
may be reused: the previous record is ``ok``, its result file exists, the model and reduction
settings are the same (:func:`settings_fingerprint`) and every input's SHA-256 is unchanged
(or, with ``trust_mtime``, every input's size and mtime).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drcnet.instrument.lamost import parse_raw_name
from drcnet.provenance import write_json_atomic

__all__ = [
    "TaskSpec",
    "can_skip",
    "discover_tasks",
    "exposure_folders",
    "input_checksums",
    "input_files",
    "read_record",
    "settings_fingerprint",
    "sha256_file",
    "write_record",
]

MANIFEST_FORMAT = "drcnet-night-manifest-v1"


@dataclass(frozen=True)
class TaskSpec:
    """One unit of work: one spectrograph (and science run) of one exposure folder."""

    exposure: str
    """Exposure id: the folder's path relative to the night root (the root's own name for the root)."""
    folder: str
    """Absolute path of the exposure folder."""
    spid: int
    planid: str
    run: int | None = None
    """Science run number, only when the folder holds several science runs of this spectrograph."""

    @property
    def key(self) -> str:
        """Unique, readable task id, e.g. ``SIM00001/sp02`` (``.../sp02-r10007`` with several runs)."""
        return f"{self.exposure}/{self.stem}"

    @property
    def stem(self) -> str:
        """File stem of the task's result and record inside its exposure's work folder."""
        return f"sp{self.spid:02d}" + ("" if self.run is None else f"-r{self.run}")

    def result_path(self, work_dir: str | Path) -> Path:
        """Per-task catalogue (Parquet) in the work folder."""
        return Path(work_dir) / self.exposure / f"{self.stem}.parquet"

    def record_path(self, work_dir: str | Path) -> Path:
        """Per-task record (JSON: status, checksums, timings, error) in the work folder."""
        return Path(work_dir) / self.exposure / f"{self.stem}.json"

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain JSON values."""
        return asdict(self)


def _raw_names(folder: Path) -> list[tuple[Any, Path]]:
    out = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return out
    for p in entries:
        name = parse_raw_name(p.name)
        if name is not None and not p.is_dir():
            out.append((name, p))
    return out


def exposure_folders(root: str | Path, skip: Iterable[str | Path] = ()) -> list[Path]:
    """Every folder under ``root`` (``root`` included) that directly holds LAMOST raw frames, sorted.

    Hidden folders (``.name``) and the folders in ``skip`` (e.g. the run's own work folder) are
    not entered; symbolic links to folders are followed.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: night root folder not found")
    skipped = {Path(s).resolve() for s in skip}
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in skipped)
        if _raw_names(here):
            found.append(here)
    return sorted(found, key=lambda p: str(p.relative_to(root)))


def _exposure_id(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root)
    return root.resolve().name if rel == Path(".") else rel.as_posix()


def discover_tasks(root: str | Path, skip: Iterable[str | Path] = ()) -> list[TaskSpec]:
    """One task per (exposure folder, spectrograph) under ``root``, from the file names alone.

    A spectrograph whose folder holds several science runs gets one task per run. The plan id is
    the one most of the spectrograph's frames carry (the reduction reports any mix as an error).
    """
    root = Path(root)
    tasks: list[TaskSpec] = []
    for folder in exposure_folders(root, skip):
        by_spid: dict[int, list[Any]] = {}
        for name, _ in _raw_names(folder):
            by_spid.setdefault(name.spid, []).append(name)
        for spid in sorted(by_spid):
            names = by_spid[spid]
            plans = [n.planid for n in names]
            planid = max(sorted(set(plans)), key=plans.count)
            runs = sorted({n.run for n in names if n.kind == "science"})
            for run in runs if len(runs) > 1 else [None]:
                tasks.append(
                    TaskSpec(
                        exposure=_exposure_id(root, folder),
                        folder=str(folder.resolve()),
                        spid=spid,
                        planid=planid,
                        run=run,
                    )
                )
    return tasks


def input_files(spec: TaskSpec) -> list[Path]:
    """The files a task reads: the spectrograph's raw frames (science frames of its run only) and fiber maps."""
    folder = Path(spec.folder)
    out = []
    for name, p in _raw_names(folder):
        if name.spid != spec.spid:
            continue
        if spec.run is not None and name.kind == "science" and name.run != spec.run:
            continue
        out.append(p)
    out += sorted(folder.glob(f"fibermap-*-sp{spec.spid:02d}.fits"))
    return out


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file (read in 4 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def file_stats(paths: Sequence[Path]) -> dict[str, dict[str, int]]:
    """``{name: {"size", "mtime_ns"}}`` of each file (following links)."""
    out = {}
    for p in paths:
        st = p.stat()
        out[p.name] = {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
    return out


def input_checksums(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256", "size", "mtime_ns"}}`` of each input file."""
    stats = file_stats(paths)
    return {p.name: {"sha256": sha256_file(p), **stats[p.name]} for p in paths}


def settings_fingerprint(model: Mapping[str, Any], reduce: Mapping[str, Any]) -> str:
    """SHA-256 of what, besides the inputs, decides a task's result: the model and the reduction settings."""
    blob = json.dumps({"model": dict(model), "reduce": dict(reduce)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_record(path: str | Path) -> dict[str, Any] | None:
    """A task record written by an earlier run, or ``None`` (missing or unreadable: the task is redone)."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def write_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write a task record atomically."""
    return write_json_atomic(path, dict(record))


def _same_inputs(old: Mapping[str, Any], new: Mapping[str, Any], fields: Sequence[str]) -> bool:
    if set(old) != set(new):
        return False
    return all(all(old[n].get(f) == new[n].get(f) for f in fields) for n in new)


def can_skip(
    previous: Mapping[str, Any] | None,
    result: str | Path,
    fingerprint: str,
    inputs: Mapping[str, Mapping[str, Any]],
    by: str = "sha256",
) -> bool:
    """May a task reuse its earlier result?

    Parameters
    ----------
    previous
        The task's record from an earlier run (or ``None``).
    result
        The task's result file (must still exist).
    fingerprint
        :func:`settings_fingerprint` of this run.
    inputs
        This run's view of the inputs: ``{name: {"sha256", "size", "mtime_ns"}}`` (``by="sha256"``)
        or ``{name: {"size", "mtime_ns"}}`` (``by="stat"``).
    by
        ``"sha256"``: every input's content hash must match; ``"stat"``: size and mtime must match.
    """
    if not previous or previous.get("status") not in ("ok", "skipped"):
        return False
    if previous.get("fingerprint") != fingerprint or not Path(result).is_file():
        return False
    fields = ("sha256",) if by == "sha256" else ("size", "mtime_ns")
    return _same_inputs(previous.get("inputs") or {}, inputs, fields)
