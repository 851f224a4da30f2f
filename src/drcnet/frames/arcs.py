"""Calibration lamps: arc-lamp line lists (Hg, Ne, Ar, Cd) and the continuum lamp of the flats.

The line lists are PypeIt's (``<DRCNET_DATA>/observatory/arc_lines``, vacuum
wavelengths with relative amplitudes; see the folder's README). Each lamp's
amplitudes are normalised to its strongest line and multiplied by a lamp
weight (:data:`LAMP_WEIGHTS`, *chosen*), because the lists come from different
instruments and their amplitudes are only comparable within one lamp.

Both lamps go through the same optics as starlight (:mod:`drcnet.simulate.optics`):
the arm's throughput, the fiber's throughput, and each fiber's own wavelength
solution; arc lines have the instrument's Gaussian line spread (FWHM = lambda / R),
integrated exactly over each pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from drcnet.frames.errors import FrameError
from drcnet.instrument import ArmConfig
from drcnet.simulate.optics import U0, FiberGeometry, arm_throughput, dispersion, wavelength

LAMPS: tuple[str, ...] = ("HgI", "NeI", "ArI", "CdI")
LAMP_WEIGHTS: dict[str, float] = {"HgI": 1.0, "NeI": 0.6, "ArI": 0.5, "CdI": 0.5}
"""Relative brightness of each lamp's strongest line (chosen)."""
FWHM_PER_SIGMA = 2.3548200450309493


@dataclass(frozen=True)
class ArcLines:
    """A merged line list: vacuum wavelength (A), relative amplitude (strongest line = 1) and ion."""

    wave: np.ndarray
    amplitude: np.ndarray
    ion: np.ndarray

    def select(self, keep: np.ndarray) -> ArcLines:
        return ArcLines(self.wave[keep], self.amplitude[keep], self.ion[keep])


def read_line_list(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one PypeIt line list (``| ion | wave | NIST | Instr | amplitude | Source |``)."""
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


def read_arc_lines(arc_dir: str | Path, lamps: tuple[str, ...] = LAMPS) -> ArcLines:
    """Read and merge the lamps' line lists from ``arc_dir`` (``<lamp>_lines.dat``)."""
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


def columns_of(arm: ArmConfig, waves: np.ndarray, shift_px: float = 0.0) -> np.ndarray:
    """Column where each vacuum wavelength lands (vectorised :func:`drcnet.simulate.optics.column_of`)."""
    waves = np.asarray(waves, dtype=float)
    u = (waves - arm.center_a) / arm.dispersion
    for _ in range(8):
        f = arm.center_a + u * (arm.dispersion + u * (arm.quad + u * arm.cubic)) - waves
        u -= f / (arm.dispersion + u * (2 * arm.quad + 3 * u * arm.cubic))
    return u + U0 + shift_px


def line_sigma_px(arm: ArmConfig, waves: np.ndarray, centres: np.ndarray, shift_px: float = 0.0) -> np.ndarray:
    """Gaussian sigma (columns) of the instrument's line spread at ``waves`` (FWHM = lambda / R)."""
    return np.asarray(waves) / arm.resolving_power / FWHM_PER_SIGMA / np.abs(dispersion(arm, centres, shift_px))


def arc_electrons(arm: ArmConfig, geom: FiberGeometry, cols: np.ndarray, lines: ArcLines, level: float) -> np.ndarray:
    """Electrons per column of the arc lamp in one fiber.

    Each line deposits ``level * amplitude * arm_throughput(lambda) * fiber throughput``
    electrons, spread over columns by a pixel-integrated Gaussian centred where
    the fiber's wavelength solution puts it (out to 8 sigma).
    """
    cols = np.asarray(cols)
    c0, n = int(cols[0]), cols.size
    centre = columns_of(arm, lines.wave, geom.shift_px)
    sigma = line_sigma_px(arm, lines.wave, centre, geom.shift_px)
    total = level * lines.amplitude * arm_throughput(arm, lines.wave) * geom.throughput
    keep = (centre + 8 * sigma >= c0) & (centre - 8 * sigma <= c0 + n - 1) & (total > 0)
    centre, sigma, total = centre[keep], sigma[keep], total[keep]
    out = np.zeros(n)
    if centre.size == 0:
        return out
    half = int(np.ceil(8 * sigma.max())) + 1
    x = np.floor(centre)[:, None] + np.arange(-half, half + 1)[None, :]
    dep = total[:, None] * (ndtr((x + 0.5 - centre[:, None]) / sigma[:, None])
                            - ndtr((x - 0.5 - centre[:, None]) / sigma[:, None]))
    inside = (x >= c0) & (x < c0 + n)
    np.add.at(out, (x[inside] - c0).astype(np.intp), dep[inside])
    return out


def lamp_continuum(wave: np.ndarray, temperature_k: float = 3100.0) -> np.ndarray:
    """Photon spectrum of a quartz-halogen lamp (a blackbody), normalised to 1 at its maximum over ``wave``."""
    hc_over_k = 1.438776877e8  # A K
    w = np.asarray(wave, dtype=float)
    photons = w ** -4 / np.expm1(hc_over_k / (w * temperature_k))
    return photons / photons.max()


def flat_electrons(arm: ArmConfig, geom: FiberGeometry, cols: np.ndarray, level: float) -> np.ndarray:
    """Electrons per column of the flat lamp in one fiber (``level`` at the nominal peak)."""
    wave = wavelength(arm, cols, geom.shift_px)
    disp = np.abs(dispersion(arm, cols, geom.shift_px)) / arm.dispersion
    return level * geom.throughput * lamp_continuum(wave) * arm_throughput(arm, wave) / arm.peak_throughput * disp
