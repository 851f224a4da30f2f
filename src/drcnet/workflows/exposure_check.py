"""Checking an exposure's files before any pixel is reduced: headers, shapes, sizes, fiber counts, fiber maps.

:func:`check_exposure` finds every (or the chosen) spectrograph of an exposure folder
(:func:`~drcnet.instrument.exposure.find_exposure`) and checks all their files
(:func:`~drcnet.instrument.rawframe.check_frame_file`) and fiber maps, so bad input stops a run
before any work starts. The reduction (:mod:`drcnet.workflows.reduce_exposure`) takes its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits

from drcnet.instrument.config import N_FIBERS
from drcnet.instrument.errors import FrameError
from drcnet.instrument.exposure import SpectrographFiles, find_exposure
from drcnet.instrument.fibermap import FiberMap, read_fibermap
from drcnet.instrument.lamost import LAMOST
from drcnet.instrument.rawframe import check_frame_file

__all__ = ["CheckedSpectrograph", "check_exposure", "check_files", "check_spectrograph", "fiber_count"]


def check_files(sp: SpectrographFiles) -> dict[str, fits.Header]:
    """Check every raw file of a spectrograph (header, shape, size, gzip CRC) before any work starts.

    Returns
    -------
    dict
        Arm -> the science frame's header (unparsable cards dropped).
    """
    headers = {}
    for arm, files in sp.arms.items():
        for p in (*files.bias, files.flat, files.arc, files.science):
            header = check_frame_file(p)
            if p == files.science:
                headers[arm] = header
    return headers


def fiber_count(sp: SpectrographFiles, headers: dict[str, fits.Header], n_default: int = N_FIBERS) -> int:
    """Fibers of the spectrograph: the science headers' NFIBERS, checked against each other and the fiber map.

    Raises
    ------
    FrameError
        NFIBERS is not a whole number, differs between the arms, or differs from the
        fiber map while the fiber map agrees with the instrument (the science header is
        blamed, naming it).
    """
    counts: dict[str, int] = {}
    for arm, header in headers.items():
        if "NFIBERS" not in header:
            continue
        try:
            counts[arm] = int(header["NFIBERS"])
        except (TypeError, ValueError) as exc:
            raise FrameError(
                f"{sp.arms[arm].science}: header NFIBERS = {header['NFIBERS']!r} is not a whole number of fibers"
            ) from exc
    if not counts:
        return n_default
    n_map = None
    try:
        n_map = int(fits.getval(sp.fibermap, "NAXIS2", 1))
    except (OSError, KeyError, IndexError, ValueError):
        pass  # read_fibermap reports an unreadable map
    for arm, n in counts.items():
        if n_map is not None and n != n_map and n_map == n_default:
            raise FrameError(
                f"{sp.arms[arm].science}: header NFIBERS = {n} but the fiber map {sp.fibermap.name} "
                f"lists {n_map} fibers, as a {LAMOST.name} spectrograph has; the science header is wrong"
            )
    if len(set(counts.values())) > 1:
        raise FrameError(
            f"{sp.arms['red'].science}: header NFIBERS = {counts.get('red')} but the blue science frame "
            f"says {counts.get('blue')}"
        )
    return next(iter(counts.values()))


@dataclass
class CheckedSpectrograph:
    """A spectrograph whose files passed the cheap checks (:func:`check_files`), with its fiber map read."""

    files: SpectrographFiles
    headers: dict[str, fits.Header]
    """Arm -> the science frame's header."""
    fibermap: FiberMap

    @property
    def n_fibers(self) -> int:
        """Fibers of the spectrograph (rows of its fiber map)."""
        return len(self.fibermap)


def check_spectrograph(sp: SpectrographFiles) -> CheckedSpectrograph:
    """Check every raw file of a spectrograph and read its fiber map (no pixels are read).

    Raises
    ------
    FrameError
        A truncated, corrupt or inconsistent file, or a fiber map that does not fit (names the file).
    """
    headers = check_files(sp)
    n_fibers = fiber_count(sp, headers)
    fmap = read_fibermap(sp.fibermap, spid=sp.spid, n_fibers=n_fibers)
    return CheckedSpectrograph(files=sp, headers=headers, fibermap=fmap)


def check_exposure(
    folder: str | Path, spids: list[int] | None = None, run: int | None = None
) -> list[CheckedSpectrograph]:
    """Find every (or the chosen) spectrograph of an exposure and check all their files before any work.

    Raises
    ------
    FrameError
        A missing, unreadable or inconsistent file of any spectrograph (the message names it).
    """
    return [check_spectrograph(sp) for sp in find_exposure(folder, spids, run)]
