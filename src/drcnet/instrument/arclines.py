"""Arc-lamp line lists (Hg, Ne, Ar, Cd): reading PypeIt's tables into one :class:`ArcLines`.

The line lists are PypeIt's (vacuum wavelengths with relative amplitudes): the reduction reads the
copy shipped inside the package (``drcnet/instrument/data/arc_lines``, source and checksums in its
README; :func:`packaged_arc_lines`), so raw frames are reduced without a reference data folder; the
simulator reads the same files from ``<DRCNET_DATA>/observatory/arc_lines``. Each lamp's
amplitudes are normalised to its strongest line and multiplied by a lamp
weight (:data:`LAMP_WEIGHTS`, *chosen*), because the lists come from different
instruments and their amplitudes are only comparable within one lamp.

The lamps' light on the CCD is simulated in :mod:`drcnet.simulate.exposure.lamps`;
the wavelength calibration that uses the lines is :mod:`drcnet.reduce.wavecal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drcnet.instrument.config import LAMPS
from drcnet.instrument.errors import FrameError

__all__ = ["LAMPS", "LAMP_WEIGHTS", "ArcLines", "packaged_arc_lines", "read_arc_lines", "read_line_list"]

LAMP_WEIGHTS: dict[str, float] = {"HgI": 1.0, "NeI": 0.6, "ArI": 0.5, "CdI": 0.5}
"""Relative brightness of each lamp's strongest line (chosen)."""


@dataclass(frozen=True)
class ArcLines:
    """A merged line list: vacuum wavelength (A), relative amplitude (strongest line = 1) and ion."""

    wave: np.ndarray
    amplitude: np.ndarray
    ion: np.ndarray

    def select(self, keep: np.ndarray) -> ArcLines:
        """The lines where ``keep`` (a boolean mask or index array) selects them."""
        return ArcLines(self.wave[keep], self.amplitude[keep], self.ion[keep])


def read_line_list(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one PypeIt line list (``| ion | wave | NIST | Instr | amplitude | Source |``).

    Returns
    -------
    wave, amplitude, ion
        Vacuum wavelengths (A), amplitudes as listed, ion names; one entry per line.

    Raises
    ------
    FrameError
        The file cannot be read or holds no line.
    """
    path = Path(path)
    ions, waves, amps = [], [], []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FrameError(f"{path}: cannot read the arc line list ({exc})") from exc
    for line in text.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) < 5 or line.lstrip().startswith("#"):
            continue
        try:
            w, a = float(parts[1]), float(parts[4])
        except ValueError:
            continue  # the header row
        ions.append(parts[0])
        waves.append(w)
        amps.append(a)
    if not waves:
        raise FrameError(f"{path}: no lines found; expected PypeIt's '| ion | wave | NIST | Instr | amplitude |' table")
    return np.array(waves), np.array(amps), np.array(ions)


PACKAGE_ARC_DIR = "data/arc_lines"
"""Folder of the shipped line lists, relative to the ``drcnet.instrument`` package."""


def packaged_arc_lines(lamps: tuple[str, ...] = LAMPS) -> ArcLines:
    """The lamps' line lists shipped inside the package (no reference data folder needed).

    Returns
    -------
    ArcLines
        As :func:`read_arc_lines` on ``drcnet/instrument/data/arc_lines`` (PypeIt 2.0.1's lists).

    Raises
    ------
    FrameError
        A lamp without a shipped list (the message names it).
    """
    from importlib.resources import as_file, files

    with as_file(files("drcnet.instrument") / PACKAGE_ARC_DIR) as folder:
        return read_arc_lines(folder, lamps)


def read_arc_lines(arc_dir: str | Path, lamps: tuple[str, ...] = LAMPS) -> ArcLines:
    """Read and merge the lamps' line lists from ``arc_dir`` (``<lamp>_lines.dat``).

    Returns
    -------
    ArcLines
        All lamps' lines sorted by wavelength, amplitudes normalised per lamp
        and weighted by :data:`LAMP_WEIGHTS`.

    Raises
    ------
    FrameError
        A lamp's list is missing, unreadable or empty.
    """
    arc_dir = Path(arc_dir)
    waves, amps, ions = [], [], []
    for lamp in lamps:
        path = arc_dir / f"{lamp}_lines.dat"
        if not path.is_file():
            raise FrameError(f"{path}: arc line list for lamp {lamp} not found (folder {arc_dir})")
        w, a, ion = read_line_list(path)
        a = np.clip(a, 0, None)
        waves.append(w)
        amps.append(LAMP_WEIGHTS.get(lamp, 1.0) * a / a.max())
        ions.append(ion)
    w = np.concatenate(waves)
    order = np.argsort(w)
    return ArcLines(w[order], np.concatenate(amps)[order], np.concatenate(ions)[order])
