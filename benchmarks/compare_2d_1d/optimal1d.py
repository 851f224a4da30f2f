"""Optimal (Horne 1986) 1D spectra of simulated stripes, with the fiber's true spatial profile.

The dataset's ``flux1d`` is the boxcar (aperture) sum of the same stripe
(:func:`drcnet.reduce.extract.boxcar_extract`, called by the forward model). This module extracts the
same stripe again with :func:`drcnet.reduce.extract.optimal_extract` (the reduction's Horne extraction:
profile-weighted, variance-weighted, iterative outlier rejection), using the profile the forward model
rendered the light with (:class:`drcnet.simulate.optics.ProfileTable` of the object's FWHM) centred on
the trace the stripe was cut around -- the trace a pipeline would have measured from the flat. Under a
trace error the optimal extraction therefore uses the same wrong trace as the boxcar.

The profile is normalised to sum 1 over the 11 stripe rows of each column, so the optimal flux is on
the boxcar's scale (an estimate of the fiber's light inside the aperture, star and sky; the neighbours'
halo and scattered light are not part of the profile model and leak in through the fit, down-weighted).

Two uses:

* :func:`optimal_arms` -- one rendered object (:class:`drcnet.simulate.render.ObjectResult`), as
  ``systematics.py`` does;
* ``python optimal1d.py IN.h5 OUT.h5`` -- a copy of a dataset file whose ``flux1d``/``ivar1d`` are the
  optimal extraction: the file's own ``flux1d_opt``/``ivar1d_opt`` where it has them (``drcnet simulate``
  and ``simulate-population`` write them since the ``hybrid_optimal`` model, extracted by the forward
  model from the float64 stripe), else the optimal extraction of its (float16) stripes, the profile
  rebuilt from ``params/`` (fiber, trace row, profile FWHM); ``train_compare.py`` trains RC-Net on such a
  file, and an RC-Net trained on one is the 1D model the ``hybrid_optimal`` default is compared with.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

from drcnet.conventions import STRIPE_HALF_ROWS, stripe_columns
from drcnet.instrument import InstrumentConfig
from drcnet.instrument.config import CCDConfig, FiberConfig, slit_position
from drcnet.reduce.extract import OptimalResult, extraction_chi2, optimal_extract
from drcnet.reduce.flexure import recentre_profile
from drcnet.simulate.optics import FiberGeometry, ProfileTable

_TABLES: dict[float, ProfileTable] = {}


def profile_table(fiber: FiberConfig, fwhm_px: float) -> ProfileTable:
    """The forward model's profile table for a spatial FWHM (cached per FWHM)."""
    key = round(float(fwhm_px), 3)
    if key not in _TABLES:
        _TABLES[key] = ProfileTable(fiber.model_copy(update={"profile_fwhm_px": key}))
    return _TABLES[key]


def stripe_profile(
    geom: FiberGeometry, table: ProfileTable, cols: np.ndarray | None = None, shift_px: float = 0.0
) -> np.ndarray:
    """``(11, n_cols)`` normalised profile of a fiber traced at ``geom`` over the stripe cut around it.

    The stripe's rows are ``round(trace) - 5 .. round(trace) + 5`` (:func:`drcnet.simulate.ccd.stripe_rows`);
    the profile is centred at ``trace + shift_px``; each column sums to 1.
    """
    cols = stripe_columns() if cols is None else cols
    trace = geom.trace(cols)
    start = np.floor(trace + 0.5).astype(np.intp) - STRIPE_HALF_ROWS
    p = table.stripe(start, 2 * STRIPE_HALF_ROWS + 1, trace + shift_px)
    return p / np.maximum(p.sum(axis=0, keepdims=True), 1e-12)


def optimal_fit(
    stripes: np.ndarray,
    profiles: np.ndarray,
    ccd: CCDConfig,
    bad: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> OptimalResult:
    """The reduction's optimal fit (:func:`drcnet.reduce.extract.optimal_extract`) of stripes ``(n, 11,
    n_cols)`` (net ADU) with their profiles, each re-centred on its stripe's light first where they are
    0.5 px or more apart (:func:`drcnet.reduce.flexure.recentre_profile`), except the stripes ``keep``
    marks (``(n,)``: a saturated stripe or one a much brighter neighbour fills, as the reduction and the
    forward model do)."""
    data = np.asarray(stripes, dtype=np.float64)
    return optimal_extract(
        data,
        recentre_profile(data, profiles, bad, keep=keep)[0],
        ccd.gain_e_per_adu,
        ccd.read_noise_e / ccd.gain_e_per_adu,
        bad=bad,
    )


def optimal_arms(
    result,
    fwhm_px: float,
    instrument: InstrumentConfig | None = None,  # type: ignore[no-untyped-def]
    bad: np.ndarray | None = None,
    trace_shift_px: float = 0.0,
    keep: bool = False,
) -> tuple[OptimalResult, np.ndarray]:
    """The optimal fit of one rendered object's two stripes (``flux``, ``ivar`` ``(2, 3000)``; its ``model``
    is what the reduction puts in place of masked pixels, :func:`drcnet.reduce.extract.repaired_stripes`)
    and what each arm's stripe holds beyond it (the ``(2, 3)`` :func:`drcnet.reduce.extract.extraction_chi2`).

    Parameters
    ----------
    result : drcnet.simulate.render.ObjectResult
        The rendered object; each arm's ``geometry`` is the trace its stripe was cut around.
    fwhm_px : float
        Spatial FWHM the light was rendered with (the true profile).
    bad : numpy.ndarray, optional
        ``(2, 11, 3000)`` pixels a bad-pixel map marks (left out of the fit).
    trace_shift_px : float
        Centre the profile this many rows from the trace the stripe was cut around (the stripe's rows stay
        the same): ``-offset`` puts it back on the light of a mis-traced stripe (an oracle).
    keep : bool
        Leave the profile where it is (no re-centring on the light): a much brighter neighbour.
    """
    inst = instrument or InstrumentConfig()
    table = profile_table(inst.fiber, fwhm_px)
    stripes = np.stack([a.stripe for a in result.arms])
    profiles = np.stack([stripe_profile(a.geometry, table, shift_px=trace_shift_px) for a in result.arms])
    fit = optimal_fit(stripes, profiles, inst.ccd, bad, keep=np.array([keep, keep]))
    rn_adu = inst.ccd.read_noise_e / inst.ccd.gain_e_per_adu
    return fit, extraction_chi2(stripes, fit, inst.ccd.gain_e_per_adu, rn_adu, bad)


def profiles_from_params(params: dict[str, np.ndarray], rows: np.ndarray, fiber: FiberConfig) -> np.ndarray:
    """``(len(rows), 2, 11, 3000)`` profiles of dataset objects from their ``params/`` columns.

    The trace is rebuilt from ``fiber`` (1-based), ``trace_row0_blue``/``trace_row0_red`` (the row the
    stripe was cut around; a randomised file's trace offset is already in it) and the fiber's tilt and
    bow; the FWHM is ``dr_profile_fwhm_px`` where the file has it, else the nominal one.
    """
    out = np.empty((len(rows), 2, 2 * STRIPE_HALF_ROWS + 1, stripe_columns().size), dtype=np.float32)
    fwhm = params.get("dr_profile_fwhm_px")
    for k, i in enumerate(rows):
        f = round(float(params["fiber"][i])) - 1
        width = float(fwhm[i]) if fwhm is not None and np.isfinite(fwhm[i]) else fiber.profile_fwhm_px
        table = profile_table(fiber, width)
        for a, arm in enumerate(("blue", "red")):
            geom = FiberGeometry(
                f,
                float(params[f"trace_row0_{arm}"][i]),
                float(fiber.tilt_px),
                float(fiber.curvature_px * slit_position(f)),
                0.0,
                1.0,
            )
            out[k, a] = stripe_profile(geom, table)
    return out


def write_optimal_dataset(src: str | Path, dst: str | Path, chunk: int = 64) -> dict[str, float]:
    """Copy dataset ``src`` to ``dst`` with ``flux1d``/``ivar1d`` replaced by the optimal extraction.

    Written to ``dst.tmp`` and renamed (atomic). Returns the median optimal / boxcar ivar ratio per arm.
    """
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    inst = InstrumentConfig()
    ratios: list[list[float]] = [[], []]
    with h5py.File(tmp, "r+") as h:
        stored = "flux1d_opt" in h
        if stored:
            ratios = _use_stored_optimal(h, src, chunk)
    if stored:
        tmp.replace(dst)
        return {
            "median_ivar_ratio_blue": float(np.median(ratios[0])),
            "median_ivar_ratio_red": float(np.median(ratios[1])),
        }
    with h5py.File(tmp, "r+") as h:
        n = h["flux1d"].shape[0]
        params = {k: h["params"][k][:] for k in h["params"]}
        for s in range(0, n, chunk):
            rows = np.arange(s, min(n, s + chunk))
            st = h["stripes"][s : rows[-1] + 1].astype(np.float64)  # (m, 2, 11, 3000)
            prof = profiles_from_params(params, rows, inst.fiber)
            m = len(rows)
            fit = optimal_fit(st.reshape(m * 2, *st.shape[2:]), prof.reshape(m * 2, *prof.shape[2:]), inst.ccd)
            flux, ivar = fit.flux, fit.ivar
            box_ivar = h["ivar1d"][s : rows[-1] + 1]
            ivar = ivar.reshape(m, 2, -1)
            for a in range(2):
                ratios[a].extend(np.median(ivar[:, a] / np.maximum(box_ivar[:, a], 1e-30), axis=1).tolist())
            h["flux1d"][s : rows[-1] + 1] = flux.reshape(m, 2, -1).astype(np.float32)
            h["ivar1d"][s : rows[-1] + 1] = ivar.astype(np.float32)
        prov = {
            "flux1d": "optimal (Horne) extraction of the stripes with the true profile "
            "(benchmarks/compare_2d_1d/optimal1d.py)",
            "source_file": src.name,
        }
        h.attrs["optimal1d"] = json.dumps(prov)
    tmp.replace(dst)
    return {"median_ivar_ratio_blue": float(np.median(ratios[0])), "median_ivar_ratio_red": float(np.median(ratios[1]))}


def _use_stored_optimal(h: h5py.File, src: Path, chunk: int) -> list[list[float]]:
    """Copy an open file's ``flux1d_opt``/``ivar1d_opt`` (the forward model's optimal extraction) over its
    ``flux1d``/``ivar1d``; return the per-object median optimal / boxcar ivar ratios of each arm."""
    ratios: list[list[float]] = [[], []]
    n = h["flux1d"].shape[0]
    for s in range(0, n, chunk):
        box_ivar = h["ivar1d"][s : s + chunk]
        ivar = h["ivar1d_opt"][s : s + chunk]
        for a in range(2):
            ratios[a].extend(np.median(ivar[:, a] / np.maximum(box_ivar[:, a], 1e-30), axis=1).tolist())
        h["flux1d"][s : s + chunk] = h["flux1d_opt"][s : s + chunk]
        h["ivar1d"][s : s + chunk] = ivar
    h.attrs["optimal1d"] = json.dumps(
        {"flux1d": "the file's flux1d_opt (the forward model's optimal extraction)", "source_file": src.name}
    )
    return ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="dataset file (drcnet simulate / simulate-population)")
    ap.add_argument("dst", help="output file: the same with optimal flux1d/ivar1d")
    args = ap.parse_args(argv)
    print(json.dumps(write_optimal_dataset(args.src, args.dst)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
