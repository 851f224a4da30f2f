"""An exposure folder on disk: which raw files belong to which spectrograph and arm (LAMOST layout).

:func:`find_exposure` finds, per spectrograph, the bias frames, flat, arc and
science frame of both arms and the fiber map
(:func:`drcnet.instrument.rawframe.check_frame_file` then checks each raw file
cheaply, so a bad file is reported before any work starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drcnet.instrument.errors import FrameError, MissingFrameError
from drcnet.instrument.lamost import ARM_LETTER, KIND_LETTER, RawName, parse_raw_name


@dataclass
class ArmFiles:
    """The raw files of one arm of one spectrograph."""

    arm: str
    bias: list[Path]
    flat: Path
    arc: Path
    science: Path


@dataclass
class SpectrographFiles:
    """Everything the reduction reads for one spectrograph."""

    spid: int
    planid: str
    arms: dict[str, ArmFiles]
    fibermap: Path


def fibermap_name(planid: str, spid: int) -> str:
    """File name of a spectrograph's fiber map, e.g. ``fibermap-SIM00000-sp01.fits``."""
    return f"fibermap-{planid}-sp{spid:02d}.fits"


def truth_name(planid: str, spid: int) -> str:
    """File name of the simulation truth sidecar of a spectrograph."""
    return f"truth-{planid}-sp{spid:02d}.h5"


def exposure_input_files(folder: str | Path) -> list[Path]:
    """The files of an exposure folder that the reduction may read: raw frames, fiber maps, truth sidecars.

    A cheap listing (names only), for the output rule (:func:`drcnet.outputs.check_outputs`) before any
    work; ``[folder]`` for a file, ``[]`` for a path that does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [folder] if folder.is_file() else []
    return [
        p
        for p in folder.iterdir()
        if p.is_file() and (parse_raw_name(p.name) is not None or p.name.startswith(("fibermap-", "truth-")))
    ]


def _pick(paths: Sequence[tuple[RawName, Path]], what: str, folder: Path, run: int | None = None) -> Path:
    if run is not None:
        paths = [p for p in paths if p[0].run == run]
    if len(paths) == 1:
        return paths[0][1]
    names = ", ".join(p[1].name for p in paths)
    hint = "" if run is not None else "; choose one with --run"
    raise FrameError(f"{folder}: {len(paths)} {what} frames ({names}){hint}")


def _has_frames(folder: Path) -> bool:
    return any(parse_raw_name(p.name) is not None for p in folder.iterdir())


def _exposure_folder(folder: Path) -> Path:
    """``folder`` itself, or its only subfolder that holds raw frames (``exposures/`` -> ``exposures/<plan>``)."""
    if _has_frames(folder):
        return folder
    subs = [p for p in sorted(folder.iterdir()) if p.is_dir() and _has_frames(p)]
    if len(subs) > 1:
        raise FrameError(f"{folder}: holds several exposure folders ({', '.join(p.name for p in subs)}); pick one")
    return subs[0] if subs else folder


def find_exposure(
    folder: str | Path, spids: Sequence[int] | None = None, run: int | None = None
) -> list[SpectrographFiles]:
    """Find the raw files of every spectrograph in an exposure folder.

    Each spectrograph needs, for both arms, a flat, an arc and a science frame;
    bias frames are optional (the overscan alone then sets the bias); and one
    fiber map ``fibermap-<planid>-spXX.fits``.

    Parameters
    ----------
    folder
        The exposure folder (or a folder holding exactly one, or one of its raw files or fiber maps).
    spids
        Only these spectrographs (default: every one found).
    run
        The run number of the science exposure when the folder holds several.

    Returns
    -------
    list of SpectrographFiles
        One entry per spectrograph, in the order of ``spids`` (default: ascending).

    Raises
    ------
    MissingFrameError
        The folder, an arm, a flat, an arc, a science frame or the fiber map is missing.
    FrameError
        Several candidates for one frame.
    """
    folder = Path(folder)
    if folder.is_file() and (parse_raw_name(folder.name) or folder.name.startswith("fibermap-")):
        folder = folder.parent  # a file of the exposure stands for its folder
    if not folder.is_dir():
        raise MissingFrameError(f"{folder}: exposure folder not found")
    folder = _exposure_folder(folder)
    found: dict[int, list[tuple[RawName, Path]]] = {}
    for p in sorted(folder.iterdir()):
        name = parse_raw_name(p.name)
        if name is not None:
            found.setdefault(name.spid, []).append((name, p))
    if not found:
        raise MissingFrameError(f"{folder}: no LAMOST raw frames (r[obfa]-XX[br]-PLANID-RUN-MJD.fit) in this folder")
    wanted = sorted(found) if spids is None else list(spids)
    out = []
    for spid in wanted:
        files = found.get(spid)
        if not files:
            raise MissingFrameError(f"{folder}: no raw frames of spectrograph {spid} (have: {sorted(found)})")
        try:
            out.append(_spectrograph_files(folder, spid, files, run))
        except FrameError as exc:
            if spids is not None or len(found) == 1:
                raise
            others = [s for s in sorted(found) if s != spid]
            names = ", ".join(p.name for _, p in files[:4]) + (", ..." if len(files) > 4 else "")
            raise type(exc)(
                f"{exc}. Spectrograph {spid}'s files here: {names} - a stray frame of another "
                f"spectrograph? Remove it, or reduce only the others with "
                f"{' '.join(f'--spid {s}' for s in others)}"
            ) from exc
    return out


def _spectrograph_files(
    folder: Path, spid: int, files: list[tuple[RawName, Path]], run: int | None
) -> SpectrographFiles:
    """The flat, arc, science and bias frames of both arms of one spectrograph, and its fiber map."""
    planids = sorted({n.planid for n, _ in files})
    if len(planids) > 1:
        per_plan = {pl: [p.name for n, p in files if n.planid == pl] for pl in planids}
        fewest = min(per_plan, key=lambda pl: len(per_plan[pl]))
        raise FrameError(
            f"{folder}: spectrograph {spid} has frames of several plans ({', '.join(planids)}); "
            f"plan {fewest} has only {', '.join(per_plan[fewest][:4])} - a stray file?"
        )
    arms = {}
    for arm in ARM_LETTER:
        mine = [(n, p) for n, p in files if n.arm == arm]
        if not mine:
            raise MissingFrameError(
                f"{folder}: spectrograph {spid} has no {arm}-arm frames "
                f"(r?-{spid:02d}{ARM_LETTER[arm]}-*.fit); an exposure needs both arms"
            )
        by_kind: dict[str, list[tuple[RawName, Path]]] = {}
        for n, p in mine:
            by_kind.setdefault(n.kind, []).append((n, p))
        for kind in ("flat", "arc", "science"):
            if kind not in by_kind:
                pattern = f"r{KIND_LETTER[kind]}-{spid:02d}{ARM_LETTER[arm]}-{planids[0]}-*.fit"
                raise MissingFrameError(f"{folder}: spectrograph {spid}, {arm} arm: no {kind} frame ({pattern})")
        arms[arm] = ArmFiles(
            arm=arm,
            bias=[p for _, p in by_kind.get("bias", [])],
            flat=_pick(by_kind["flat"], f"spectrograph {spid} {arm} flat", folder),
            arc=_pick(by_kind["arc"], f"spectrograph {spid} {arm} arc", folder),
            science=_pick(by_kind["science"], f"spectrograph {spid} {arm} science", folder, run),
        )
    fmap = folder / fibermap_name(planids[0], spid)
    if not fmap.is_file():
        raise MissingFrameError(f"{folder}: the fiber map of spectrograph {spid} ({fmap.name}) is missing")
    return SpectrographFiles(spid=spid, planid=planids[0], arms=arms, fibermap=fmap)
