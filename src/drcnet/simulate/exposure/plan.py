"""What a simulated plate holds: the configuration of an exposure set and the fiber assignment.

Per spectrograph, :func:`plan_fibers` lays out the 250 fibers: sky fibers
spread evenly along the slit (as LAMOST's are), a few unused and dead fibers,
a few bright F standards, a few stars bright enough to saturate, and program
stars (F, G, K in the paper's ratio) with magnitudes spread so their S/N_r
covers the paper's bins; with ``other`` > 0 that share of the program fibers holds objects of class
``other`` instead (A/M/O/B stars, galaxies, QSOs, sky-only fibers). Everything is drawn from ``default_rng([seed, spid, 0])``,
so a spectrograph's plan does not depend on how many are simulated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from drcnet.conventions import CLASSES
from drcnet.instrument.config import N_FIBERS, InstrumentConfig
from drcnet.library.template import Template
from drcnet.simulate.plan import CLASS_RATIO
from drcnet.simulate.render import Source


class ExposureConfig(BaseModel):
    """Everything that defines a simulated exposure set (stored in every file's provenance)."""

    model_config = ConfigDict(extra="forbid")

    libraries: list[str] = Field(default_factory=list, description="library folders or files of the templates")
    spectrographs: int = Field(1, ge=1, le=16, description="simulate spectrographs 1..N")
    seed: int = 0
    planid: str = Field("", description="plan id in file names (default SIM<seed>)", pattern=r"^[A-Za-z0-9]*$")
    mjd: float = Field(60000.5, description="MJD (days) of the first bias frame")
    n_bias: int = Field(5, ge=0, le=20)
    n_sky: int = Field(20, ge=1, description="sky fibers (REFERENCE: 20 per spectrograph)")
    n_unused: int = Field(3, ge=0, description="fibers with no target (parked: no light in the science frame)")
    n_dead: int = Field(2, ge=0, description="broken fibers (no light at all, not even in the flat)")
    n_fstd: int = Field(5, ge=0, description="bright F stars used as flux standards (fibertype F-std)")
    n_saturated: int = Field(3, ge=0, description="program stars bright enough to saturate the CCD")
    mag_range: tuple[float, float] = Field((14.0, 19.3), description="r magnitudes of program stars (uniform)")
    other: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of the program fibers (Obj, not saturated) given to "
        "objects of class 'other': O/B/A/M stars, galaxies, QSOs of the libraries and sky-only "
        "fibers (see OTHER_DEFAULT_NOTE)",
    )
    fstd_mag_range: tuple[float, float] = (14.0, 15.5)
    saturated_mag_range: tuple[float, float] = (9.0, 10.0)
    rv_sigma_kms: float = Field(40.0, ge=0)
    ebv_mean: float = Field(0.08, ge=0)
    airmass: float = Field(1.2, ge=1.0, description="one airmass for the whole plate")
    flat_exptime_s: float = Field(10.0, gt=0)
    arc_exptime_s: float = Field(30.0, gt=0)
    flat_peak_adu: float = Field(25000.0, gt=0, description="flat: peak pixel of a nominal fiber (ADU)")
    arc_peak_adu: float = Field(30000.0, gt=0, description="arc: peak pixel of the brightest line (ADU)")
    cosmics: bool = True
    gzip: bool = Field(False, description="write .fit.gz like the archive (slower) instead of .fit")
    instrument: InstrumentConfig = InstrumentConfig()

    @model_validator(mode="after")
    def _check(self) -> ExposureConfig:
        if not self.planid:
            self.planid = f"SIM{self.seed:05d}"
        special = self.n_sky + self.n_unused + self.n_dead + self.n_fstd + self.n_saturated
        if special >= N_FIBERS:
            raise ValueError(
                f"sky + unused + dead + F-std + saturated fibers ({special}) leave no program fibers out of {N_FIBERS}"
            )
        for name in ("mag_range", "fstd_mag_range", "saturated_mag_range"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name}: {lo} > {hi}")
        return self

    @property
    def science_exptime_s(self) -> float:
        """Exposure time of the science frame (s): the instrument's site exposure."""
        return self.instrument.site.exposure_s


@dataclass
class FiberPlan:
    """One spectrograph's fibers (arrays of length 250, index = fiber - 1)."""

    spid: int
    fibertype: np.ndarray  # str
    objid: np.ndarray  # str
    sources: list[Source | None]  # the star in each fiber (None: no star)
    sky_scale: np.ndarray  # relative sky level seen by each fiber
    template_id: np.ndarray  # str, "" when no star

    @property
    def lit_science(self) -> np.ndarray:
        """Fibers with light in the science frame (stars and sky fibers)."""
        return np.isin(self.fibertype, ["Obj", "F-std", "Sky"])

    @property
    def lit_lamps(self) -> np.ndarray:
        """Fibers that carry lamp light (all but dead ones)."""
        return self.fibertype != "Dead"


OTHER_DEFAULT_NOTE = """Why ``other`` defaults to 0: every existing exposure (tests, demos, benchmarks) keeps its
plate, truth and numbers, and the F/G/K-only plate stays the paper's setting. A realistic LAMOST LRS plate
has roughly 15 % non-F/G/K object fibers (A stars ~8 %, M stars ~4 %, galaxies/QSOs ~2 %, empty or
misplaced fibers ~1 %), so ``--other 0.15`` is the recommended survey-like setting."""


def _draw(rng: np.random.Generator, template: int, mag: float, cfg: ExposureConfig) -> Source:
    rv = float(np.clip(rng.normal(0.0, cfg.rv_sigma_kms), -4 * cfg.rv_sigma_kms, 4 * cfg.rv_sigma_kms))
    ebv = float(min(rng.exponential(cfg.ebv_mean), 0.6)) if cfg.ebv_mean > 0 else 0.0
    return Source(template=template, rv_kms=rv, ebv=ebv, mag_r=float(mag), airmass=cfg.airmass)


def plan_fibers(cfg: ExposureConfig, templates: Sequence[Template], spid: int) -> FiberPlan:
    """Assign fiber types and stars to the fibers of spectrograph ``spid``."""
    rng = np.random.default_rng([cfg.seed, spid, 0])
    by_class = {c: [i for i, t in enumerate(templates) if t.cls == c] for c in CLASSES}
    missing = [c for c, v in by_class.items() if not v]
    if missing:
        raise ValueError(f"no templates of class(es) {', '.join(missing)} to fill the plate with")
    ftype = np.full(N_FIBERS, "Obj", dtype=object)
    # sky fibers evenly along the slit with a small random offset, the rest drawn at random
    sky = np.clip(
        np.round((np.arange(cfg.n_sky) + 0.5) * N_FIBERS / cfg.n_sky + rng.integers(-3, 4, cfg.n_sky)).astype(int),
        0,
        N_FIBERS - 1,
    )
    sky = np.unique(sky)
    ftype[sky] = "Sky"
    free = np.flatnonzero(ftype == "Obj")
    picks = rng.permutation(free)
    k = 0
    for name, count in (
        ("Unused", cfg.n_unused),
        ("Dead", cfg.n_dead),
        ("F-std", cfg.n_fstd),
        ("sat", cfg.n_saturated),
    ):
        ftype[picks[k : k + count]] = name
        k += count
    saturated = ftype == "sat"
    ftype[saturated] = "Obj"
    ratio = np.array([CLASS_RATIO[c] for c in CLASSES], dtype=float)
    sources: list[Source | None] = []
    objid, tid = [], []
    sky_scale = 1.0 + cfg.instrument.site.sky_rms * rng.standard_normal(N_FIBERS)
    for f in range(N_FIBERS):
        kind = ftype[f]
        if kind in ("Obj", "F-std"):
            if kind == "F-std":
                cls, mags = "F", cfg.fstd_mag_range
            else:
                cls = CLASSES[int(rng.choice(3, p=ratio / ratio.sum()))]
                mags = cfg.saturated_mag_range if saturated[f] else cfg.mag_range
            t = int(rng.choice(by_class[cls]))
            sources.append(_draw(rng, t, rng.uniform(*mags), cfg))
            objid.append(f"{cfg.planid}-{spid:02d}-{f + 1:03d}")
            tid.append(templates[t].template_id)
        else:
            sources.append(None)
            objid.append("")
            tid.append("")
    if cfg.other > 0:
        _place_other(cfg, templates, spid, ftype, saturated, sources, tid)
    return FiberPlan(
        spid=spid,
        fibertype=ftype.astype(str),
        objid=np.array(objid),
        sources=sources,
        sky_scale=sky_scale,
        template_id=np.array(tid),
    )


def _place_other(
    cfg: ExposureConfig,
    templates: Sequence[Template],
    spid: int,
    ftype: np.ndarray,
    saturated: np.ndarray,
    sources: list[Source | None],
    tid: list[str],
) -> None:
    """Replace ``round(cfg.other x program fibers)`` program stars by ``other`` objects, in place.

    Program fibers are the ``Obj`` fibers that are not saturated stars. The fibers, their objects and
    magnitudes come from a second stream ``default_rng([seed, spid, 3])``, so every F/G/K fiber keeps
    exactly the star it has without ``other``. Sky-only pseudo-templates (``meta["no_light"]``,
    :func:`drcnet.simulate.sources.no_light_templates`) get r = :data:`~drcnet.simulate.dataset.NO_LIGHT_MAG`:
    the fiber sees only the sky and its neighbours' halo. Counts per source group are exact
    (:func:`drcnet.simulate.plan.plan_other_objects`: 15 % sky-only, the rest by the population's shares).
    """
    from drcnet.conventions import OTHER
    from drcnet.simulate.dataset import NO_LIGHT_MAG, is_observed
    from drcnet.simulate.plan import SKY_SHARE, plan_other_objects

    rng = np.random.default_rng([cfg.seed, spid, 3])
    program = np.flatnonzero((ftype == "Obj") & ~saturated)
    k = int(np.floor(cfg.other * program.size + 0.5))
    if k == 0:
        return
    pool = [i for i, t in enumerate(templates) if t.cls == OTHER]
    if not pool:
        raise ValueError(
            "--other: no O/B/A/M star, galaxy, QSO or sky-only template to put in the fibers; add a "
            "library with such spectra (e.g. stelib, miles or a LAMOST folder)"
        )
    sub = [templates[i] for i in pool]
    plan = plan_other_objects(
        {("test", -1): k},
        sub,
        np.full(len(sub), 2),
        (1.0, 2.0),
        rng,
        sky_share=SKY_SHARE if any(t.meta.get("no_light") for t in sub) else 0.0,
    )
    fibers = np.sort(rng.choice(program, size=k, replace=False))
    for f, j in zip(fibers, rng.permutation(plan.template), strict=True):
        t = templates[pool[int(j)]]
        src = _draw(rng, pool[int(j)], rng.uniform(*cfg.mag_range), cfg)
        if t.meta.get("no_light"):
            src = Source(src.template, 0.0, 0.0, NO_LIGHT_MAG, src.airmass)
        elif is_observed(t):  # a real survey spectrum is already reddened and carries its own velocity
            src = Source(src.template, 0.0, 0.0, src.mag_r, src.airmass)
        sources[int(f)] = src
        tid[int(f)] = t.template_id
