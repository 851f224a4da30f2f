"""Wavelength calibration from the arc: find the lamp lines in every fiber, fit its wavelength offset.

The instrument's nominal solution (a cubic in the column, :class:`drcnet.instrument.config.ArmConfig`;
the arithmetic is :mod:`drcnet.reduce.wavesol`)
fixes the shape; each fiber's spectrum is offset along the columns by a few
tenths of a pixel to a couple of pixels (random part plus the smile across the
slit). For each fiber the arc spectrum (aperture sum along the trace, all
4096 columns) is searched near every usable line's nominal column, the line
is centred with the windowed centroid of :mod:`drcnet.reduce.centroid`, and
the fiber's offset is the clipped mean of (measured - nominal); with
``degree=1`` a linear stretch is fitted too.

Usable lines: inside the CCD with a margin, bright enough (after the arm's
throughput) and isolated (no other line of comparable amplitude within
``isolation_px``), since a blend pulls the centroid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from drcnet.conventions import FWHM_PER_SIGMA
from drcnet.hardware import ArmConfig, Detector, arm_throughput
from drcnet.reduce.centroid import windowed_centroid
from drcnet.reduce.wavesol import columns_of, wavelength


class LineList(Protocol):
    """What the calibration needs of a lamp line list (:class:`drcnet.instrument.arclines.ArcLines` is one).

    ``wave``: vacuum wavelengths (A); ``amplitude``: relative strengths; ``select``: the sub-list a mask keeps.
    """

    wave: np.ndarray
    amplitude: np.ndarray

    def select(self, keep: np.ndarray) -> LineList: ...


class WavecalConfig(BaseModel):
    """Options of :func:`calibrate`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    search_px: float = Field(6.0, gt=0, description="largest offset searched around a line's nominal column")
    isolation_px: float = Field(
        14.0, ge=0, description="no line brighter than `blend_ratio` x this one within this distance"
    )
    blend_ratio: float = Field(0.05, ge=0)
    min_relative_amplitude: float = Field(
        0.002, ge=0, description="lines fainter than this share of the brightest are skipped"
    )
    min_peak_snr: float = Field(15.0, gt=0)
    edge_px: int = Field(20, ge=0)
    degree: int = Field(0, ge=0, le=1, description="0: offset only; 1: offset and linear stretch")
    clip_sigma: float = Field(3.5, gt=1)


@dataclass
class WaveSolution:
    """Per-fiber wavelength solution of one arm.

    ``shift_px`` and ``stretch`` define ``measured = nominal + shift + stretch * (nominal - u0)``
    for each line's nominal column; ``rms_px`` and ``n_lines`` describe the fit;
    ``line_wave``, ``nominal``, ``measured`` (NaN: not found) and ``used`` (kept by
    the clipped fit) keep the lines for QA and tests.
    """

    arm: ArmConfig
    shift_px: np.ndarray
    stretch: np.ndarray
    rms_px: np.ndarray
    n_lines: np.ndarray
    line_wave: np.ndarray
    nominal: np.ndarray
    measured: np.ndarray
    used: np.ndarray
    u0: float
    """Origin column of the solutions (:attr:`drcnet.hardware.Detector.u0`)."""
    bad_pixels: np.ndarray | None = None
    """``(n_fibers,)`` the fiber's arc aperture held NaN pixels near a line (set by the caller), or None."""

    def wavelength(self, fiber: int | np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Vacuum wavelength at ``cols`` for fiber(s) ``fiber`` (0-based)."""
        f = np.atleast_1d(fiber)
        x = np.asarray(cols, dtype=float)[None, :]
        a = self.shift_px[f][:, None]
        b = self.stretch[f][:, None]
        nominal_col = (x - a + b * self.u0) / (1.0 + b)
        out = wavelength(self.arm, nominal_col, 0.0, u0=self.u0)
        return out[0] if np.ndim(fiber) == 0 else out

    def summary(self) -> dict[str, object]:
        """JSON-ready numbers: median line rms (px), median lines per fiber, range of the offsets (px)."""
        ok = self.n_lines > 0
        return {
            "median_rms_px": float(np.median(self.rms_px[ok])) if ok.any() else None,
            "median_lines": float(np.median(self.n_lines[ok])) if ok.any() else 0.0,
            "n_fibers_without_lines": int(np.sum(~ok)),
            "shift_range_px": [float(self.shift_px[ok].min()), float(self.shift_px[ok].max())] if ok.any() else [],
        }


def usable_lines(arm: ArmConfig, lines: LineList, cfg: WavecalConfig, *, detector: Detector) -> LineList:
    """Lines of ``lines`` that fall on the arm's CCD (``detector``), are bright enough and isolated."""
    col = columns_of(arm, lines.wave, u0=detector.u0)
    strength = lines.amplitude * arm_throughput(arm, lines.wave)
    on = (col > cfg.edge_px) & (col < detector.n_cols - 1 - cfg.edge_px)
    col, strength, sel = col[on], strength[on], lines.select(on)
    keep = strength > cfg.min_relative_amplitude * strength.max()
    for i in range(col.size):
        near = (np.abs(col - col[i]) < cfg.isolation_px) & (np.arange(col.size) != i)
        if np.any(strength[near] > cfg.blend_ratio * strength[i]):
            keep[i] = False
    return sel.select(keep)


def line_columns(
    arm: ArmConfig, lines: LineList, config: WavecalConfig | None = None, *, detector: Detector
) -> np.ndarray:
    """The columns :func:`calibrate` looks at: around each usable line, the search range plus the centroid window."""
    cfg = config or WavecalConfig()
    use = usable_lines(arm, lines, cfg, detector=detector)
    nominal = columns_of(arm, use.wave, u0=detector.u0)
    sigma = np.median(use.wave / arm.resolving_power / FWHM_PER_SIGMA / arm.dispersion)
    reach = int(np.ceil(cfg.search_px)) + int(np.ceil(3 * sigma)) + 3
    cols = (np.round(nominal).astype(int)[:, None] + np.arange(-reach, reach + 1)[None, :]).ravel()
    return np.unique(np.clip(cols, 0, detector.n_cols - 1))


def calibrate(
    arc_spectra: np.ndarray,
    arm: ArmConfig,
    lines: LineList,
    noise: np.ndarray,
    lost: np.ndarray | None = None,
    config: WavecalConfig | None = None,
    *,
    detector: Detector,
) -> WaveSolution:
    """Fit every fiber's wavelength offset from its arc spectrum.

    Parameters
    ----------
    arc_spectra
        Aperture sums of the arc along each trace ``(n_fibers, 4096)`` (ADU).
    arm
        The arm (nominal solution and resolution).
    lines
        Lamp lines (:func:`drcnet.instrument.arclines.read_arc_lines`): ``wave``, ``amplitude`` and ``select``.
    noise
        Noise (ADU) of each fiber's arc spectrum, per pixel ``(n_fibers,)``, for the peak S/N cut.
    lost
        Fibers to skip (no trace).
    detector
        The CCD: data columns and the solution's origin ``u0``.
    """
    cfg = config or WavecalConfig()
    use = usable_lines(arm, lines, cfg, detector=detector)
    n_f = arc_spectra.shape[0]
    nominal = columns_of(arm, use.wave, u0=detector.u0)
    sigma = np.median(use.wave / arm.resolving_power / FWHM_PER_SIGMA / arm.dispersion)
    half = int(np.ceil(3 * sigma))
    measured = np.full((n_f, use.wave.size), np.nan)
    # coarse: the brightest pixel within the search range, then the windowed centroid
    offs = np.arange(-int(np.ceil(cfg.search_px)), int(np.ceil(cfg.search_px)) + 1)
    cols = np.clip(np.round(nominal).astype(int)[:, None] + offs[None, :], 0, detector.n_cols - 1)
    lost = np.zeros(n_f, bool) if lost is None else lost
    fibers = np.flatnonzero(~lost)
    seg = arc_spectra[fibers][:, cols]  # (fibers, lines, search)
    peak = np.take_along_axis(cols[None, :, :].repeat(fibers.size, 0), seg.argmax(axis=2)[..., None], 2)[..., 0]
    which = np.repeat(fibers, cols.shape[0])
    x, _ = windowed_centroid(arc_spectra, peak.ravel().astype(float), sigma, half, which=which)
    x = x.reshape(peak.shape)
    height = np.take_along_axis(arc_spectra[fibers], peak, axis=1)
    bright = height > cfg.min_peak_snr * np.maximum(noise[fibers], 1e-6)[:, None]
    inside = np.abs(x - nominal[None, :]) <= cfg.search_px
    measured[fibers] = np.where(bright & inside & np.isfinite(x), x, np.nan)
    shift, stretch, rms, n_lines, used = fit_offsets(measured, nominal, lost, cfg, u0=detector.u0)
    # fibers without a solution take the median offset of the others
    solved = n_lines > 0
    if solved.any():
        shift[~solved] = np.median(shift[solved])
        stretch[~solved] = np.median(stretch[solved])
    return WaveSolution(
        arm=arm,
        shift_px=shift,
        stretch=stretch,
        rms_px=rms,
        n_lines=n_lines,
        line_wave=use.wave,
        nominal=nominal,
        measured=measured,
        used=used,
        u0=detector.u0,
    )


def fit_offsets(
    measured: np.ndarray, nominal: np.ndarray, lost: np.ndarray, cfg: WavecalConfig, *, u0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each fiber's clipped fit of (measured - nominal) line columns: offset (and stretch), all fibers at once.

    The same rounds and stopping rule as fitting one fiber after the other
    (``tests/reduce_references.py`` keeps the per-fiber loop as the reference): up to 4 rounds of a fit to the kept
    lines and a clip at ``clip_sigma`` robust sigmas (at least 0.02 px), stopping when the kept
    set no longer changes; a fiber with fewer than ``degree + 2`` kept lines gets no solution.

    Parameters
    ----------
    measured
        ``(n_fibers, n_lines)`` measured line columns (NaN: not found).
    nominal
        ``(n_lines,)`` the lines' nominal columns.
    lost
        ``(n_fibers,)`` fibers to skip.
    u0
        Origin column of the stretch (:attr:`drcnet.hardware.Detector.u0`).

    Returns
    -------
    shift, stretch, rms, n_lines, used
        ``(n_fibers,)`` offset (px), stretch, rms about the fit (px, NaN without a solution), lines
        kept, and ``(n_fibers, n_lines)`` the kept lines.
    """
    n_f = measured.shape[0]
    shift = np.zeros(n_f)
    stretch = np.zeros(n_f)
    rms = np.full(n_f, np.nan)
    n_lines = np.zeros(n_f, dtype=int)
    used = np.zeros(measured.shape, dtype=bool)
    u = nominal - u0
    d = measured - nominal[None, :]
    finite = np.isfinite(d)
    dz = np.where(finite, d, 0.0)
    ok = finite.copy()
    a = np.zeros(n_f)
    b = np.zeros(n_f)
    need = cfg.degree + 2
    active = ~np.asarray(lost, dtype=bool)
    for _ in range(4):
        active &= ok.sum(axis=1) >= need
        if not active.any():
            break
        ids = np.flatnonzero(active)
        w = ok[ids].astype(np.float64)
        n = w.sum(axis=1)
        if cfg.degree == 0:
            a[ids] = (w * dz[ids]).sum(axis=1) / n
            b[ids] = 0.0
        else:  # least-squares line d = a + b u through the kept lines
            su, sd = (w * u).sum(axis=1), (w * dz[ids]).sum(axis=1)
            suu, sud = (w * u * u).sum(axis=1), (w * u * dz[ids]).sum(axis=1)
            den = n * suu - su * su
            b[ids] = (n * sud - su * sd) / den
            a[ids] = (sd - b[ids] * su) / n
        resid = d[ids] - (a[ids, None] + b[ids, None] * u[None, :])
        with np.errstate(invalid="ignore"):
            med = np.nanmedian(np.where(ok[ids], np.abs(resid), np.nan), axis=1)
            s = np.maximum(1.4826 * med, 0.02)
            new = finite[ids] & (np.abs(resid) < cfg.clip_sigma * s[:, None])
        done = np.all(new == ok[ids], axis=1)
        ok[ids[~done]] = new[~done]
        active[ids[done]] = False
    solved = ~np.asarray(lost, dtype=bool) & (ok.sum(axis=1) >= need)
    shift[solved], stretch[solved] = a[solved], b[solved]
    fit = a[solved, None] + b[solved, None] * u[None, :]
    n_ok = ok[solved].sum(axis=1)
    rms[solved] = np.sqrt(np.sum(np.where(ok[solved], (dz[solved] - fit) ** 2, 0.0), axis=1) / n_ok)
    n_lines[solved] = n_ok
    used[solved] = ok[solved]
    return shift, stretch, rms, n_lines, used
