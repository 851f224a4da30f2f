"""Spectrograph optics: per-fiber traces and wavelength offsets, throughput and spatial profile.

The nominal wavelength solution (:func:`wavelength`, :func:`dispersion`,
:func:`column_of`) is the reduction's arithmetic (:mod:`drcnet.reduce.wavesol`)
and the arm throughput the instrument's (:func:`drcnet.instrument.config.arm_throughput`);
both are re-exported here for the forward model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from drcnet.conventions import FWHM_PER_SIGMA
from drcnet.instrument.config import U0, ArmConfig, FiberConfig, arm_throughput, fiber_row_at_centre, slit_position
from drcnet.reduce import wavesol

__all__ = [
    "U0",
    "FiberGeometry",
    "ProfileTable",
    "arm_throughput",
    "column_of",
    "dispersion",
    "fiber_geometries",
    "profile_integral",
    "wavelength",
]


def wavelength(arm: ArmConfig, cols: np.ndarray, shift_px: float = 0.0, u0: float = U0) -> np.ndarray:
    """:func:`drcnet.reduce.wavesol.wavelength` about the LAMOST CCD's centre column by default."""
    return wavesol.wavelength(arm, cols, shift_px, u0=u0)


def dispersion(arm: ArmConfig, cols: np.ndarray, shift_px: float = 0.0, u0: float = U0) -> np.ndarray:
    """:func:`drcnet.reduce.wavesol.dispersion` about the LAMOST CCD's centre column by default."""
    return wavesol.dispersion(arm, cols, shift_px, u0=u0)


def column_of(arm: ArmConfig, wave_a: float, shift_px: float = 0.0, u0: float = U0) -> float:
    """:func:`drcnet.reduce.wavesol.column_of` about the LAMOST CCD's centre column by default."""
    return wavesol.column_of(arm, wave_a, shift_px, u0=u0)


@dataclass(frozen=True)
class FiberGeometry:
    """Where one fiber's light falls on one arm's CCD.

    Attributes
    ----------
    fiber
        0-based fiber index on the slit.
    row0
        Trace row at the centre column (fractional: the centre is not on a pixel centre).
    tilt, bow
        Trace ``y(x) = row0 + tilt * v + bow * v**2`` with ``v = (x - U0) / U0``.
    shift_px
        Wavelength offset of this fiber (pixels), smile plus random part.
    throughput
        Relative fiber throughput (1 = nominal).
    """

    fiber: int
    row0: float
    tilt: float
    bow: float
    shift_px: float
    throughput: float

    def trace(self, cols: np.ndarray) -> np.ndarray:
        """Trace centre row at columns ``cols``."""
        v = (np.asarray(cols, dtype=float) - U0) / U0
        return self.row0 + self.tilt * v + self.bow * v * v


def fiber_geometries(cfg: FiberConfig, rng: np.random.Generator, fibers: np.ndarray) -> list[FiberGeometry]:
    """Draw the geometry of ``fibers`` (0-based indices) for one arm of one spectrograph.

    The bow grows toward the slit ends (a pincushion-like pattern) and the
    wavelength smile is quadratic along the slit; both are deterministic, the
    small random parts come from ``rng``.
    """
    fibers = np.asarray(fibers, dtype=int)
    s = slit_position(fibers)
    row0 = fiber_row_at_centre(fibers, cfg) + rng.normal(0.0, cfg.pitch_jitter_px, fibers.size)
    bow = cfg.curvature_px * s
    shift = cfg.smile_px * s * s + rng.normal(0.0, cfg.fiber_shift_px, fibers.size)
    thr = np.clip(rng.normal(1.0, cfg.throughput_rms, fibers.size), 0.5, 1.5)
    return [
        FiberGeometry(int(f), float(r), float(cfg.tilt_px), float(b), float(sh), float(t))
        for f, r, b, sh, t in zip(fibers, row0, bow, shift, thr, strict=True)
    ]


def profile_integral(delta: np.ndarray, cfg: FiberConfig) -> np.ndarray:
    """Share of a fiber's light in a pixel whose centre is ``delta`` rows from the trace.

    The profile is a Gaussian core (FWHM ``profile_fwhm_px``) plus a Lorentzian
    halo holding ``wing_fraction`` of the light; both are integrated exactly
    over the pixel, so the shares over all rows sum to 1.
    """
    sigma = cfg.profile_fwhm_px / FWHM_PER_SIGMA
    hi = delta + 0.5
    lo = delta - 0.5
    core = ndtr(hi / sigma) - ndtr(lo / sigma)
    if cfg.wing_fraction == 0:
        return core
    g = cfg.wing_hwhm_px
    wing = (np.arctan(hi / g) - np.arctan(lo / g)) / np.pi
    return (1.0 - cfg.wing_fraction) * core + cfg.wing_fraction * wing


class ProfileTable:
    """Tabulated :func:`profile_integral` for fast rendering.

    Every pixel of a column sees the trace at the same fractional offset, so
    the profile is tabulated over integer row offsets and a fine grid of
    fractional offsets and linearly interpolated in the fraction (error < 1e-6
    of the fiber's light with the default 1/256-pixel grid).
    """

    def __init__(self, cfg: FiberConfig, reach: int = 40, oversample: int = 256) -> None:
        self.reach = reach
        self.oversample = oversample
        offsets = np.arange(-reach - 1, reach + 2)
        frac = np.arange(oversample + 1) / oversample
        # table[m + reach + 1, j] = share of a pixel m rows from floor(centre) when centre has fraction frac[j]
        self.table = profile_integral(offsets[:, None] - frac[None, :], cfg)
        # flat copies for np.take: _lo[i] = table.flat[i], _hi[i] = table.flat[i + 1] (the next fraction)
        self._lo = np.ascontiguousarray(self.table).reshape(-1)
        self._hi = np.append(self._lo[1:], 0.0)

    def _columns(self, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per column: integer floor of the centre, flat table index of row offset 0 at its fraction, and the weight."""
        base = np.floor(centre)
        pos = (centre - base) * self.oversample
        j = np.minimum(pos.astype(np.intp), self.oversample - 1)
        w = pos - j
        return base.astype(np.intp), j + (self.reach + 1) * (self.oversample + 1), w

    def _lookup(self, flat: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``table[k, j] * (1 - w) + table[k, j + 1] * w`` from flat indices of ``(k, j)``; new array."""
        out = self._lo.take(flat)
        out *= 1.0 - w
        hi = self._hi.take(flat)
        hi *= w
        out += hi
        return out

    def __call__(self, rows: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Share of the light in pixels at ``rows`` for a trace at ``centre`` (one value per column).

        Parameters
        ----------
        rows : numpy.ndarray
            Either 1D ``(n_rows,)`` (the same rows in every column) or 2D ``(n_rows, n_cols)`` (e.g.
            a stripe that follows the trace).
        centre : numpy.ndarray
            ``(n_cols,)`` trace centre row of each column.

        Returns
        -------
        numpy.ndarray
            ``(n_rows, n_cols)`` share of the fiber's light in each pixel (0 beyond ``reach`` rows).
        """
        base, j0, w = self._columns(centre)
        rows = np.asarray(rows, dtype=np.intp)
        m = (rows[:, None] if rows.ndim == 1 else rows) - base[None, :]
        outside = np.abs(m) > self.reach
        any_outside = bool(outside.any())
        if any_outside:
            m = np.clip(m, -self.reach, self.reach)
        m *= self.oversample + 1
        m += j0[None, :]
        out = self._lookup(m, w[None, :])
        if any_outside:
            out[outside] = 0.0
        return out

    def stripe(self, row_start: np.ndarray, n_rows: int, centre: np.ndarray) -> np.ndarray:
        """:meth:`__call__` for the rows ``row_start + 0 .. n_rows - 1`` of each column (the same numbers).

        Parameters
        ----------
        row_start : numpy.ndarray
            ``(n_cols,)`` int first row of each column (e.g. a stripe's rows that follow a trace).
        n_rows : int
            Rows per column.
        centre : numpy.ndarray
            ``(n_cols,)`` trace centre row of the fiber whose light is wanted.

        Returns
        -------
        numpy.ndarray
            ``(n_rows, n_cols)`` share of the fiber's light in each pixel.
        """
        base, j0, w = self._columns(centre)
        m0 = np.asarray(row_start, dtype=np.intp) - base
        if m0.min() < -self.reach or m0.max() + n_rows - 1 > self.reach:  # partly beyond the table: general path
            return self(np.asarray(row_start, dtype=np.intp)[None, :] + np.arange(n_rows)[:, None], centre)
        flat = (m0 * (self.oversample + 1) + j0)[None, :] + (np.arange(n_rows) * (self.oversample + 1))[:, None]
        return self._lookup(flat, w[None, :])
