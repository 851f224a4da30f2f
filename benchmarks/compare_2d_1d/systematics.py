"""Issue 21 item 3: 1D and 2D models side by side on held-out real stars under each rendered systematic.

Held-out real LAMOST F/G/K stars (the validation and test splits of
:func:`drcnet.simulate.population.load_population`: a hash of the star's name, never rendered into
training) are rendered by the forward model at a faint S/N_r (3-10) and at 10-20, once per star and bin,
under each condition below. Within a (star, bin) pair every condition uses the same star magnitude
(fixed by the nominal render's S/N target), fiber, neighbours and random stream, so a condition
differs from ``nominal`` only by its systematic:

=================  ===========================================================================================
condition          what changes (the forward model's knob)
=================  ===========================================================================================
nominal            nothing (RandomizedForwardModel with every range collapsed to the nominal value)
cosmics_x10        ``CCDConfig.cosmic_rate_per_cm2_min`` x 10
bad_pixels         ~1 % of the stripe's pixels: hot pixels and hot/dead column segments (benchmark-local:
                   the forward model has no defect knob; :class:`SystematicsModel`), in the bad-pixel map:
                   the optimal fit leaves them out and the stripes get the fit (profile x flux) in their
                   place, the boxcar summed from those, as ``frames reduce`` does with masked (NaN) pixels
                   (:func:`drcnet.reduce.science.extract_spectra`; until session 27 the stripes kept them)
bad_pixels_unmasked  the same defects, in no map: the fit's outlier rejection is all that removes them
bright_neighbour   one neighbouring fiber holds an r = 10-11 mag star (``neighbour_mag_range`` of the
                   dataset: 14-18.5 nominally); its Lorentzian halo reaches the stripe
bright_neighbour_13  the same neighbour (same star, side, quantile) at r = 13-14 mag
scattered_12pc     ``DomainRandomization.scattered_fraction`` = 0.12
trace_error_1p5    ``DomainRandomization.trace_offset_px`` = +1.5: the stripe (and both extractions) are cut
                   around a trace 1.5 px off the light
fwhm_9px           ``DomainRandomization.profile_fwhm_px`` = 9 (nominal 6)
no_neighbours      both neighbouring fibers are sky fibers (no neighbour halo at all): the stripe holds the
                   fiber's own light (star and sky, along the profile) and noise, what the optimal fit models
=================  ===========================================================================================

Every model reads the stripes and the boxcar as ``frames reduce`` hands them on: the pixels in the
bad-pixel map replaced by the optimal fit's model (:func:`drcnet.reduce.extract.repaired_stripes`; since
session 27), the boxcar summed from those. ``--repair-outliers`` (an experiment) replaces the pixels the
fit rejected as outliers (cosmic rays, unmapped hot pixels) as well.

Each cell also records what the stripe holds beyond the optimal 1D spectrum of the same render
(:func:`drcnet.reduce.extract.extraction_chi2`: chi^2 per degree of freedom of the stripe minus profile x optimal flux, all
rows, and per pixel in the core and edge rows; medians over the stars, each arm): 1 where the stripe is
the profile times the spectrum plus noise, above 1 where it holds light the profile model lacks.

Models, on the same renders: ``rcnet-robust`` on the boxcar ``flux1d`` (what a dataset file stores: the
aperture sum of the same stripe) and on the optimal (Horne) extraction of the same stripe with the true
profile (``optimal1d.py``; under ``bad_pixels`` the fit is given the defect map, as a pipeline's
bad-pixel mask would be); ``drcnet-robust`` and ``drcnet-survey`` on the stripes (float16, as a file
stores them); the default ``drcnet-hybrid`` (a ``hybrid_optimal`` since session 24) on the stripes and the
optimal 1D of the same render (the same ``optimal1d.py`` fit, given the defect map as the reduction's
bad-pixel mask); a boxcar ``hybrid`` run (``--models RUN:hybrid``) on the stripes and the boxcar 1D. A
column whose input does not match its model's input kind is refused. ``--models`` picks the columns (default
:data:`MODELS`). A four-class model's ``other`` answer counts as wrong. One render per star and bin, so
the Wilson interval (:func:`drcnet.metrics.accuracy_interval`) is counted by star; the paired
difference of two models on the same stars gets a star bootstrap interval, and so does each model's
difference between a condition and ``nominal`` (``paired_minus_nominal``, when ``nominal`` is run first).

usage::

    DRCNET_DATA=../shared/data python benchmarks/compare_2d_1d/systematics.py --seed 21 \
        --out benchmarks/compare_2d_1d/results/systematics.json
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optimal1d
import torch

from drcnet.conventions import CLASSES, STRIPE_HALF_ROWS
from drcnet.inference.engine import predict_arrays
from drcnet.inference.predictor import load_model
from drcnet.instrument import InstrumentConfig
from drcnet.instrument.config import N_FIBERS
from drcnet.metrics import accuracy_interval
from drcnet.paths import data_root as default_data_root
from drcnet.provenance import provenance, write_json_atomic
from drcnet.reduce.extract import boxcar_extract, repaired_stripes
from drcnet.reduce.flexure import NEIGHBOUR_RATIO
from drcnet.simulate.population import load_population
from drcnet.simulate.randomize import DomainRandomization, RandomizedForwardModel
from drcnet.simulate.render import Source
from drcnet.simulate.site import Site

BINS = {"<10": (3.0, 10.0), "10-20": (10.0, 20.0)}
CONDITIONS = (
    "nominal",
    "cosmics_x10",
    "bad_pixels",
    "bad_pixels_unmasked",
    "bright_neighbour",
    "bright_neighbour_13",
    "scattered_12pc",
    "trace_error_1p5",
    "fwhm_9px",
    "no_neighbours",
)
MODELS = (
    ("rcnet-robust", "boxcar"),
    ("rcnet-robust", "optimal"),
    ("drcnet-robust", "stripes"),
    ("drcnet-survey", "stripes"),
    ("drcnet-hybrid", "hybrid_optimal"),  # the default since session 24: stripes + optimal 1D of the same render
)
NOMINAL_DR: dict[str, Any] = {
    "throughput_amplitude": 0.0,
    "sky_level": (1.0, 1.0),
    "sky_line_scale": (1.0, 1.0),
    "profile_fwhm_px": (6.0, 6.0),
    "trace_offset_px": (0.0, 0.0),
    "wave_offset_px": (0.0, 0.0),
    "scattered_fraction": (0.0, 0.0),
}
BAD_FRACTION = 0.01
NEIGHBOUR_MAG = (14.0, 18.5)
BRIGHT_NEIGHBOUR_MAG = (10.0, 11.0)
MILD_NEIGHBOUR_MAG = (13.0, 14.0)


@dataclass(frozen=True)
class Condition:
    """One systematic: the forward model's settings and the benchmark-local additions."""

    name: str
    randomization: dict[str, Any]
    cosmic_factor: float = 1.0
    bad_pixels: bool = False
    bad_pixel_map: bool = True
    """With ``bad_pixels``: the defects are in the reduction's bad-pixel map (left out of the fit, repaired)."""
    bright_neighbour: bool = False
    neighbour_mag: tuple[float, float] = BRIGHT_NEIGHBOUR_MAG
    neighbours: bool = True

    @property
    def fwhm(self) -> float:
        return float(self.randomization["profile_fwhm_px"][0])


def conditions() -> dict[str, Condition]:
    """The conditions of the module docstring's table."""

    def dr(**kw: Any) -> dict[str, Any]:
        return {**NOMINAL_DR, **kw}

    return {
        "nominal": Condition("nominal", dr()),
        "cosmics_x10": Condition("cosmics_x10", dr(), cosmic_factor=10.0),
        "bad_pixels": Condition("bad_pixels", dr(), bad_pixels=True),
        "bad_pixels_unmasked": Condition("bad_pixels_unmasked", dr(), bad_pixels=True, bad_pixel_map=False),
        "bright_neighbour": Condition("bright_neighbour", dr(), bright_neighbour=True),
        "bright_neighbour_13": Condition(
            "bright_neighbour_13", dr(), bright_neighbour=True, neighbour_mag=MILD_NEIGHBOUR_MAG
        ),
        "scattered_12pc": Condition("scattered_12pc", dr(scattered_fraction=(0.12, 0.12))),
        "trace_error_1p5": Condition("trace_error_1p5", dr(trace_offset_px=(1.5, 1.5))),
        "fwhm_9px": Condition("fwhm_9px", dr(profile_fwhm_px=(9.0, 9.0))),
        "no_neighbours": Condition("no_neighbours", dr(), neighbours=False),
    }


def inject_defects(stripe: np.ndarray, rng: np.random.Generator, fraction: float, adc_room: float) -> np.ndarray:
    """Put ~``fraction`` of a stripe's pixels bad, in place; return the defect mask ``(11, n_cols)``.

    Half the bad pixels sit in column segments crossing the whole stripe (a hot column: + U(50, 500) ADU,
    or a dead one: the charge lost, 0 ADU net, equally likely), half are single hot pixels
    (+ exponential, mean 1000 ADU). Values stay below ``adc_room`` (the converter's ceiling less the bias).
    """
    n_cols = stripe.shape[1]
    bad = np.zeros(stripe.shape, dtype=bool)
    col_hit = rng.uniform(size=n_cols) < fraction / 2
    for c in np.flatnonzero(col_hit):
        if rng.uniform() < 0.5:
            stripe[:, c] += rng.uniform(50.0, 500.0)
        else:
            stripe[:, c] = 0.0
        bad[:, c] = True
    hot = rng.uniform(size=stripe.shape) < fraction / 2
    stripe[hot] += rng.exponential(1000.0, size=int(hot.sum()))
    bad |= hot
    np.minimum(stripe, adc_room, out=stripe)
    return bad


class SystematicsModel(RandomizedForwardModel):
    """The randomised forward model with collapsed ranges, plus optional stripe defects (``bad_pixels``).

    ``defect_rng`` (set per object) draws the defects from its own stream, so the render's stream is the
    nominal one; ``defects`` holds the last object's masks, arm order blue, red.
    """

    def __init__(self, *args: Any, bad_fraction: float = 0.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.bad_fraction = bad_fraction
        self.defect_rng: np.random.Generator | None = None
        self.defects: list[np.ndarray] = []

    def _render_arm(self, geom, cols, lights, wave, sky_e, ap, rng):  # type: ignore[no-untyped-def]
        res = super()._render_arm(geom, cols, lights, wave, sky_e, ap, rng)
        if self.bad_fraction > 0 and self.defect_rng is not None:
            ccd = self.instrument.ccd
            room = float(ccd.adc_max - max(ccd.bias_adu))
            bad = inject_defects(res.stripe, self.defect_rng, self.bad_fraction, room)
            res.flux1d, res.ivar1d = boxcar_extract(
                res.stripe, ccd.gain_e_per_adu, ccd.read_noise_e / ccd.gain_e_per_adu
            )
            # the renderer's optimal extraction saw the clean stripe: the masked fit is optimal1d.optimal_arms
            res.flux1d_opt = res.ivar1d_opt = None
            self.defects.append(bad)
        return res


@dataclass
class Draw:
    """Everything random about one (star, bin) object, shared by every condition."""

    source: Source
    fiber: int
    neighbours: list[Source | None]
    bright: Source
    bright_side: int
    snr_target: float


def draw_object(rng: np.random.Generator, star: int, pool: np.ndarray, snr_range: tuple[float, float]) -> Draw:
    """The dataset's draws (:func:`drcnet.simulate.dataset.render_planned`) for an observed star: no extra
    reddening or RV, airmass U(1, 1.6), a random fiber, neighbours from the held-out pool (a sky fiber
    with probability n_sky / 250), magnitudes U(14, 18.5); plus the bright neighbour's star and side."""
    site = InstrumentConfig().site
    airmass = float(rng.uniform(1.0, 1.6))
    fiber = int(rng.integers(0, N_FIBERS))
    neighbours: list[Source | None] = []
    for _ in range(2):
        if rng.uniform() < site.n_sky_fibers / N_FIBERS:
            neighbours.append(None)
        else:
            neighbours.append(Source(int(rng.choice(pool)), 0.0, 0.0, float(rng.uniform(*NEIGHBOUR_MAG)), airmass))
    bright = Source(int(rng.choice(pool)), 0.0, 0.0, float(rng.uniform(0.0, 1.0)), airmass)  # mag_r: a quantile
    side = int(rng.integers(0, 2))
    if fiber == 0:
        side = 1
    elif fiber == N_FIBERS - 1:
        side = 0
    target = float(math.exp(rng.uniform(math.log(snr_range[0]), math.log(snr_range[1]))))
    return Draw(Source(star, 0.0, 0.0, airmass=airmass), fiber, neighbours, bright, side, target)


def wilson(k: int, n: int) -> dict[str, Any]:
    """Accuracy cell: n, accuracy and its Wilson 95 % interval (one render per star: counted by star)."""
    return {"n_stars": n, "accuracy": k / n if n else None, "ci95": accuracy_interval(k, n)}


def paired_diff(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = 2000) -> dict[str, Any]:
    """Mean of ``a - b`` (per-star right/wrong of two models on the same stars) with a star bootstrap 95 % CI."""
    d = a.astype(float) - b.astype(float)
    if d.size == 0:
        return {"diff": None, "ci95": None}
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    return {"diff": float(d.mean()), "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="1D vs 2D models under each systematic, held-out real stars")
    ap.add_argument("--stars", type=int, default=0, help="held-out stars drawn from val + test (0: all)")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--repair-outliers",
        action="store_true",
        help="also replace the pixels the optimal fit rejected (cosmic rays, unmapped hot pixels) by its model in "
        "the stripes and the boxcar every model reads (an experiment: frames reduce keeps them; README, session 27)",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "systematics.json"))
    ap.add_argument(
        "--models",
        default="",
        help="comma-separated MODEL:INPUT columns (INPUT: boxcar, optimal, stripes, hybrid, hybrid_optimal); "
        "default: every model of MODELS",
    )
    args = ap.parse_args(argv)
    columns = _columns(args.models)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    root = Path(args.data_root) if args.data_root else default_data_root()
    templates, split = load_population(root, seed=0, include=("lamost",), spectral_labels=False)
    held = [i for i, t in enumerate(templates) if split[i] in (1, 2) and t.cls in CLASSES]
    rng = np.random.default_rng(args.seed)
    chosen = sorted(
        rng.choice(held, size=min(args.stars, len(held)) if args.stars > 0 else len(held), replace=False).tolist()
    )
    # the model holds every held-out star (neighbours come from them too); objects are the chosen ones
    tmpl = [templates[i] for i in held]
    local = {g: k for k, g in enumerate(held)}
    pool = np.arange(len(tmpl))
    stars = [local[g] for g in chosen]
    labels = np.array([CLASSES.index(tmpl[s].cls) for s in stars])
    names = [tmpl[s].template_id for s in stars]
    print(f"{len(held)} held-out F/G/K stars, {len(stars)} chosen; {time.perf_counter() - t0:.0f} s", flush=True)

    base = InstrumentConfig()
    site = Site.load(base, root)
    conds = conditions()
    wanted = [c for c in args.conditions.split(",") if c]
    models = {name: load_model(name) for name in dict.fromkeys(m for m, _ in [*columns, *MODELS[:2]])}
    for name, inp in columns:  # a column must feed its model the input it was trained on
        kind = getattr(models[name], "input_kind", "stripes")
        if KIND_OF_INPUT[inp] != kind:
            raise SystemExit(f"--models {name}:{inp}: {name} reads {kind!r} input; give {name}:{INPUT_OF_KIND[kind]}")
    draws = {
        b: [draw_object(np.random.default_rng([args.seed, s, k, 0]), s, pool, r) for s in stars]
        for k, (b, r) in enumerate(BINS.items())
    }
    # the magnitude that gives each object its S/N target under the nominal instrument
    nominal = SystematicsModel(base, site, tmpl, DomainRandomization(**NOMINAL_DR))
    mags: dict[str, list[float]] = {}
    for b, ds in draws.items():
        mags[b] = [
            nominal.render_object(
                d.source, d.fiber, np.random.default_rng(0), snr_target=d.snr_target, neighbours=d.neighbours
            ).source.mag_r
            for d in ds
        ]
    print(f"magnitudes fixed; {time.perf_counter() - t0:.0f} s", flush=True)

    results: dict[str, Any] = {}
    right: dict[tuple[str, str, str], np.ndarray] = {}
    for cname in wanted:
        c = conds[cname]
        inst = (
            base
            if c.cosmic_factor == 1.0
            else base.model_copy(
                update={
                    "ccd": base.ccd.model_copy(
                        update={"cosmic_rate_per_cm2_min": base.ccd.cosmic_rate_per_cm2_min * c.cosmic_factor}
                    )
                }
            )
        )
        model = SystematicsModel(
            inst, site, tmpl, DomainRandomization(**c.randomization), bad_fraction=BAD_FRACTION if c.bad_pixels else 0.0
        )
        results[cname] = {}
        for k, (b, ds) in enumerate(draws.items()):
            stripes, flux, sky, opt, snr, ratio, chi2 = [], [], [], [], [], [], []
            true_trace: list[np.ndarray] = []
            flux_ratio: list[list[float]] = []
            for j, d in enumerate(ds):
                s = stars[j]
                nb = list(d.neighbours) if c.neighbours else [None, None]
                if c.bright_neighbour:
                    lo, hi = c.neighbour_mag
                    q = d.bright
                    nb[d.bright_side] = Source(q.template, 0.0, 0.0, lo + (hi - lo) * q.mag_r, q.airmass)
                model.defect_rng = np.random.default_rng([args.seed, s, k, 2])
                model.defects = []
                src = Source(d.source.template, 0.0, 0.0, mags[b][j], d.source.airmass)
                r = model.render_object(
                    src, d.fiber, np.random.default_rng([args.seed, s, k, 1]), snr_target=None, neighbours=nb
                )
                bad = np.stack(model.defects) if model.defects and c.bad_pixel_map else None
                # the reduction's guard: no re-centring next to a neighbour > NEIGHBOUR_RATIO x brighter
                keep = any(q is not None and 10 ** (0.4 * (src.mag_r - q.mag_r)) > NEIGHBOUR_RATIO for q in nb)
                fit, ch = optimal1d.optimal_arms(r, c.fwhm, inst, bad=bad, keep=keep)
                of, oi = fit.flux, fit.ivar
                if bad is not None or args.repair_outliers:  # the reduction's repair (extract_spectra), its boxcar
                    ccd = inst.ccd
                    fixed = repaired_stripes(np.stack([a.stripe for a in r.arms]), fit, bad, args.repair_outliers)
                    for a, arm in enumerate(r.arms):
                        arm.stripe = fixed[a]
                        arm.flux1d, arm.ivar1d = boxcar_extract(
                            arm.stripe, ccd.gain_e_per_adu, ccd.read_noise_e / ccd.gain_e_per_adu
                        )
                chi2.append(ch)
                offset = float(c.randomization["trace_offset_px"][0])
                if offset != 0.0:  # the oracle: the same fit on the light's true trace
                    tf = optimal1d.optimal_arms(r, c.fwhm, inst, bad=bad, trace_shift_px=-offset, keep=keep)[0].flux
                    true_trace.append(tf.astype(np.float32))
                red = r.arms[1]
                with np.errstate(invalid="ignore", divide="ignore"):  # a dead column: boxcar 0, ratio NaN, left out
                    flux_ratio.append(
                        [
                            float(np.nanmedian(of[1] / red.flux1d)),
                            float(np.median((of[1] - red.sky1d) / np.maximum(red.flux1d - red.sky1d, 1e-3))),
                        ]
                    )
                stripes.append(np.stack([a.stripe for a in r.arms]).astype(np.float16))
                flux.append(np.stack([a.flux1d for a in r.arms]).astype(np.float32))
                sky.append(np.stack([a.sky1d for a in r.arms]).astype(np.float32))
                opt.append(of.astype(np.float32))
                snr.append(r.snr_r)
                ratio.append([float(np.median(oi[a] / r.arms[a].ivar1d)) for a in range(2)])
            st, fl, sk, op = np.stack(stripes), np.stack(flux), np.stack(sky), np.stack(opt)
            cell: dict[str, Any] = {
                "measured_snr_r_median": float(np.median(snr)),
                "ivar_optimal_over_boxcar_median": {
                    "blue": float(np.median([q[0] for q in ratio])),
                    "red": float(np.median([q[1] for q in ratio])),
                },
                "red_flux_optimal_over_boxcar_median": {
                    "with_sky": float(np.median([q[0] for q in flux_ratio])),
                    "sky_subtracted": float(np.median([q[1] for q in flux_ratio])),
                },
                "stripe_residual_chi2_median": _chi2_cell(np.stack(chi2)),
            }
            for mname, inp in dict.fromkeys([*columns, *MODELS[:2]]):
                m = models[mname]
                if inp == "stripes":
                    p = predict_arrays(m, stripes=st)
                elif inp in ("hybrid", "hybrid_optimal"):
                    p = predict_arrays(m, stripes=st, flux1d=fl if inp == "hybrid" else op, sky1d=sk)
                else:
                    p = predict_arrays(m, flux1d=fl if inp == "boxcar" else op, sky1d=sk)
                pred = np.where(np.isfinite(p).all(axis=1), np.nan_to_num(p).argmax(axis=1), -1)
                ok = pred == labels
                right[(cname, b, _label(mname, inp))] = ok
                cell[_label(mname, inp)] = wilson(int(ok.sum()), ok.size)
                # per star, in the order of the payload's "stars" (pool_seeds.py pools runs of other seeds)
                cell.setdefault("right_by_star", {})[_label(mname, inp)] = ok.astype(int).tolist()
            if true_trace:
                p = predict_arrays(models["rcnet-robust"], flux1d=np.stack(true_trace), sky1d=sk)
                pred = np.where(np.isfinite(p).all(axis=1), np.nan_to_num(p).argmax(axis=1), -1)
                ok = pred == labels
                cell["rcnet-robust:optimal_true_trace"] = wilson(int(ok.sum()), ok.size)
            ok1d = [right[(cname, b, "rcnet-robust:boxcar")], right[(cname, b, "rcnet-robust:optimal")]]
            best1d = "rcnet-robust:optimal" if ok1d[1].mean() >= ok1d[0].mean() else "rcnet-robust:boxcar"
            cell["paired_2d_minus_best_1d"] = {
                f"{_label(m2, i2)} - {best1d}": paired_diff(
                    right[(cname, b, _label(m2, i2))], right[(cname, b, best1d)]
                )
                for m2, i2 in columns
                if i2 in ("stripes", "hybrid", "hybrid_optimal")
            }
            cell["paired_optimal_minus_boxcar"] = paired_diff(ok1d[1], ok1d[0])
            if cname != "nominal" and ("nominal", b, best1d) in right:  # what the systematic costs each model
                cell["paired_minus_nominal"] = {
                    col: paired_diff(right[(cname, b, col)], right[("nominal", b, col)])
                    for col in (_label(m2, i2) for m2, i2 in dict.fromkeys([*MODELS[:2], *columns]))
                }
            results[cname][b] = cell
            print(
                f"{cname:17s} {b:6s} "
                + "  ".join(
                    f"{_label(mn, i)}={cell[_label(mn, i)]['accuracy']:.3f}"
                    for mn, i in dict.fromkeys([*MODELS[:2], *columns])
                )
                + f"  S/N {cell['measured_snr_r_median']:.1f}  {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
            write_json_atomic(args.out, _payload(args, results, names, labels, t0, columns))
    write_json_atomic(args.out, _payload(args, results, names, labels, t0, columns))
    print(markdown(results, [_label(m, i) for m, i in dict.fromkeys([*MODELS[:2], *columns])]))
    return 0


def _chi2_cell(chi2: np.ndarray) -> dict[str, dict[str, float]]:
    """Medians over the stars of :func:`drcnet.reduce.extract.extraction_chi2` (``chi2``: ``(n, 2 arms, 3)``) per arm."""
    return {
        arm: {key: float(np.median(chi2[:, a, k])) for k, key in enumerate(("all_rows", "core_rows", "edge_rows"))}
        for a, arm in enumerate(("blue", "red"))
    }


def _chi2_text(cell: dict[str, Any]) -> str:
    """``all (edge rows)`` of the red arm's residual chi^2, or ``-`` for a result written before it existed."""
    red = cell.get("stripe_residual_chi2_median", {}).get("red")
    return f"{red['all_rows']:.3f} (edge {red['edge_rows']:.2f})" if red else "-"


def _columns(spec: str) -> list[tuple[str, str]]:
    """``--models`` as (model, input) pairs; the two 1D columns of ``rcnet-robust`` are always scored (the
    paired differences are taken against the better of them)."""
    if not spec.strip():
        return list(MODELS)
    out = []
    for item in spec.split(","):
        name, sep, inp = item.strip().rpartition(":")
        if not sep or inp not in INPUTS:
            raise SystemExit(f"--models {item!r}: give MODEL:INPUT with INPUT one of {INPUTS}")
        out.append((name, inp))
    return out


INPUTS = ("boxcar", "optimal", "stripes", "hybrid", "hybrid_optimal")
KIND_OF_INPUT = {
    "boxcar": "spectra1d",
    "optimal": "spectra1d",
    "stripes": "stripes",
    "hybrid": "hybrid",
    "hybrid_optimal": "hybrid_optimal",
}
"""The model input kind each column input needs (a 1D model reads either extraction)."""
INPUT_OF_KIND = {"spectra1d": "boxcar", "stripes": "stripes", "hybrid": "hybrid", "hybrid_optimal": "hybrid_optimal"}


def _label(model: str, inp: str) -> str:
    """``model:input`` with a run folder named by its last part (results hold no machine paths)."""
    return f"{Path(model).name}:{inp}"


def _payload(
    args: argparse.Namespace,
    results: dict[str, Any],
    names: list[str],
    labels: np.ndarray,
    t0: float,
    columns: Sequence[tuple[str, str]] = MODELS,
) -> dict[str, Any]:
    cfg = {
        "stars": args.stars,
        "seed": args.seed,
        "bins": BINS,
        "conditions": args.conditions.split(","),
        "models": [_label(m, i) for m, i in dict.fromkeys([*MODELS[:2], *columns])],
        "bad_fraction": BAD_FRACTION,
        "outliers_repaired": bool(getattr(args, "repair_outliers", False)),
        "neighbour_mag": NEIGHBOUR_MAG,
        "bright_neighbour_mag": BRIGHT_NEIGHBOUR_MAG,
        "mild_neighbour_mag": MILD_NEIGHBOUR_MAG,
        "nominal": NOMINAL_DR,
        "held_out": "val + test splits of lamost_real (hash of the star name), F/G/K on LAMOST labels",
        "stripe_rows": 2 * STRIPE_HALF_ROWS + 1,
        "flux1d_note": "the boxcar flux1d is the aperture sum of the same rendered stripe "
        "(ForwardModel._render_arm -> boxcar_extract): every systematic reaches it",
    }
    return {
        "provenance": provenance(cfg, seed=args.seed),
        "runtime_s": time.perf_counter() - t0,
        "n_stars": len(names),
        "class_counts": {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)},
        "stars": names,
        "results": results,
    }


def markdown(results: dict[str, Any], cols: Sequence[str] | None = None) -> str:
    """The table of the README: accuracy [95 % CI] per condition, column (``model:input``) and S/N_r bin."""
    cols = list(cols) if cols is not None else [_label(m, i) for m, i in MODELS]
    head = (
        "| condition | S/N_r | n stars | "
        + " | ".join("`{}` {}".format(*c.rsplit(":", 1)) for c in cols)
        + " | ivar opt/box (red) | stripe chi2/dof after the optimal model (red) |"
    )
    lines = [head, "|" + "---|" * (len(cols) + 5)]
    for cname, by in results.items():
        for b, cell in by.items():
            accs = [cell[c]["accuracy"] for c in cols]
            best = max(accs)
            parts = []
            for c in cols:
                a, ci = cell[c]["accuracy"], cell[c]["ci95"]
                txt = f"{a:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
                parts.append(f"**{txt}**" if a == best else txt)
            n = cell[cols[0]]["n_stars"]
            lines.append(
                f"| {cname} | {b} | {n} | "
                + " | ".join(parts)
                + f" | {cell['ivar_optimal_over_boxcar_median']['red']:.3f} | {_chi2_text(cell)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
