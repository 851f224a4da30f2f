# Over 400 lines on purpose: one job (render a dataset file): plan, worker processes and writer share one state.
"""Rendering a dataset from real templates with the forward model (``drcnet simulate``).

:func:`prepare_dataset` splits the templates and plans the objects;
:func:`render_blocks` renders them in parallel worker processes and yields
blocks of rows in the dataset layout. Each object's random stream is
``default_rng([seed, index])``, so the rows do not depend on the number of
workers. :func:`drcnet.workflows.simulate_dataset.simulate_dataset` writes the
blocks to the HDF5 file as they arrive, so memory stays flat whatever the
dataset size.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from drcnet.conventions import CLASSES, CLASSES_WITH_OTHER, SPLIT_NAMES, snr_bin
from drcnet.instrument.config import N_FIBERS, InstrumentConfig
from drcnet.library.template import Template
from drcnet.simulate.convention import attach_lamost_labels
from drcnet.simulate.plan import (
    PRESETS,
    SKY_SHARE,
    ObjectPlan,
    merge_plans,
    other_counts,
    plan_objects,
    plan_other_objects,
    split_templates,
)
from drcnet.simulate.render import ForwardModel, ObjectResult, Source
from drcnet.simulate.site import Site
from drcnet.simulate.sources import no_light_templates, other_templates, split_other

PARAM_NAMES = (
    "rv_kms",
    "ebv",
    "mag_r",
    "airmass",
    "fiber",
    "snr_target",
    "attempts",
    "teff",
    "logg",
    "feh",
    "trace_row0_blue",
    "trace_row0_red",
    "wave_shift_px_blue",
    "wave_shift_px_red",
    "fiber_throughput",
)
MAX_ATTEMPTS = 25
BLOCK = 32


class SimulationConfig(BaseModel):
    """Everything that defines a simulated dataset (stored in the file)."""

    model_config = ConfigDict(extra="forbid")

    libraries: list[str] = Field(description="library folders or files the templates come from")
    preset: Literal["paper", "small", "tiny"] | None = "paper"
    n: int | None = Field(None, gt=0, description="number of objects (instead of a preset)")
    snr_min: float | None = Field(None, gt=0)
    snr_max: float | None = Field(None, gt=0)
    all_test: bool = False
    other: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of objects of class 'other' (label 3): the "
        "libraries' O/B/A/M stars, LAMOST galaxies/QSOs and sky-only fibers; 0: F/G/K only",
    )
    sky_fibers: bool = Field(True, description="with other > 0: make 15 % of the other objects sky-only fibers")
    seed: int = 0
    rv_sigma_kms: float = Field(40.0, ge=0, description="radial velocities ~ N(0, sigma), clipped at 4 sigma")
    ebv_mean: float = Field(0.08, ge=0, description="E(B-V) ~ exponential with this mean, clipped at ebv_max")
    ebv_max: float = Field(0.6, ge=0, description="largest E(B-V) drawn (LAMOST low-latitude plates reach ~1)")
    airmass_range: tuple[float, float] = (1.0, 1.6)
    neighbour_mag_range: tuple[float, float] = (14.0, 18.5)
    instrument: InstrumentConfig = InstrumentConfig()

    @model_validator(mode="after")
    def _check(self) -> SimulationConfig:
        if self.n is not None:
            if self.snr_min is None or self.snr_max is None:
                raise ValueError("--n needs --snr-min and --snr-max")
            if not self.snr_min < self.snr_max:
                raise ValueError(f"--snr-min ({self.snr_min}) must be below --snr-max ({self.snr_max})")
            self.preset = None
        elif self.preset is None:
            raise ValueError("give --preset or --n with --snr-min/--snr-max")
        if self.all_test and self.n is None:
            raise ValueError("--all-test goes with --n (a preset fixes its own splits)")
        return self


# -- worker side -------------------------------------------------------------------------------
_STATE: dict[str, object] = {}


NO_LIGHT_MAG = 40.0
"""r magnitude given to a no-light (``meta["no_light"]``, sky-only) object: 10^-9 of a 17th-magnitude star's counts."""


def _init_worker(
    model: ForwardModel,
    plan: ObjectPlan,
    config: SimulationConfig,
    template_split: np.ndarray,
    templates: Sequence[Template] | None = None,
    param_names: Sequence[str] = PARAM_NAMES,
) -> None:
    _STATE.clear()
    _STATE.update(
        model=model,
        plan=plan,
        config=config,
        template_split=template_split,
        templates=model.templates if templates is None else templates,
        param_names=param_names,
    )


def _draw_source(rng: np.random.Generator, template: int, cfg: SimulationConfig, observed: bool = False) -> Source:
    """Radial velocity, reddening and airmass of one source.

    ``observed`` sources (real survey spectra: :func:`is_observed`) are already reddened and carry their
    own radial velocity: they get E(B-V) = 0 and v = 0 (the random numbers are drawn all the same, so
    the stream does not depend on the source).
    """
    rv = float(np.clip(rng.normal(0.0, cfg.rv_sigma_kms), -4 * cfg.rv_sigma_kms, 4 * cfg.rv_sigma_kms))
    ebv = float(min(rng.exponential(cfg.ebv_mean), cfg.ebv_max)) if cfg.ebv_mean > 0 else 0.0
    airmass = float(rng.uniform(*cfg.airmass_range))
    if observed:
        rv = ebv = 0.0
    return Source(template=template, rv_kms=rv, ebv=ebv, airmass=airmass)


def is_observed(t: Template) -> bool:
    """True for a real survey spectrum (already reddened, at LAMOST resolution, with its own RV)."""
    return bool(t.meta.get("observed")) or t.library == "lamost"


def render_planned(index: int) -> ObjectResult:
    """Render object ``index`` of the plan in this worker (re-drawing noise until its S/N bin is right)."""
    model: ForwardModel = _STATE["model"]  # type: ignore[assignment]
    plan: ObjectPlan = _STATE["plan"]  # type: ignore[assignment]
    cfg: SimulationConfig = _STATE["config"]  # type: ignore[assignment]
    template_split: np.ndarray = _STATE["template_split"]  # type: ignore[assignment]
    seed = cfg.seed
    rng = np.random.default_rng([seed, index])
    observed = _STATE.get("observed")
    if observed is None:
        observed = _STATE["observed"] = [is_observed(t) for t in model.templates]
        _STATE["no_light"] = np.array([bool(t.meta.get("no_light")) for t in model.templates])
    no_light: np.ndarray = _STATE["no_light"]  # type: ignore[assignment]
    source = _draw_source(rng, int(plan.template[index]), cfg, observed[int(plan.template[index])])
    fiber = int(rng.integers(0, N_FIBERS))
    # neighbours come from the same split, so no other split's star leaks in through the halo
    same_split = np.flatnonzero((template_split == plan.split[index]) & ~no_light)
    neighbours = []
    for _ in range(2):
        if rng.uniform() < cfg.instrument.site.n_sky_fibers / N_FIBERS:
            neighbours.append(None)
        else:
            k = int(rng.choice(same_split))
            nb = _draw_source(rng, k, cfg, observed[k])
            neighbours.append(
                Source(nb.template, nb.rv_kms, nb.ebv, float(rng.uniform(*cfg.neighbour_mag_range)), source.airmass)
            )
    if no_light[int(plan.template[index])]:
        # a fiber with no object light: the sky and the neighbours' halo only, no S/N target to meet
        dark = Source(source.template, 0.0, 0.0, NO_LIGHT_MAG, source.airmass)
        result = model.render_object(dark, fiber, rng, snr_target=None, neighbours=neighbours)
        result.params["attempts"] = 1
        return result
    want = int(plan.snr_bin[index])
    lo, hi = plan.snr_range[index]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        target = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        result = model.render_object(source, fiber, rng, snr_target=target, neighbours=neighbours)
        if want < 0 or int(snr_bin(result.snr_r)) == want:
            result.params["attempts"] = attempt
            return result
    raise RuntimeError(
        f"object {index}: measured S/N_r kept missing bin {want} after {MAX_ATTEMPTS} attempts "
        f"(last {result.snr_r:.2f}); widen the target ranges in drcnet.simulate.plan"
    )


def _render_block(indices: Sequence[int]) -> list[ObjectResult]:
    return [render_planned(i) for i in indices]


def _render_packed(indices: Sequence[int]) -> tuple[int, dict[str, np.ndarray]]:
    """Render a block and pack it here, in the worker: only the file's rows (float16 stripes, float32
    spectra, ~1/4 of the rendered float64 arrays) travel back to the writing process."""
    plan: ObjectPlan = _STATE["plan"]  # type: ignore[assignment]
    templates: Sequence[Template] = _STATE["templates"]  # type: ignore[assignment]
    names: Sequence[str] = _STATE["param_names"]  # type: ignore[assignment]
    return indices[0], _pack(_render_block(indices), indices[0], plan, templates, names)


# -- main side -----------------------------------------------------------------------------------
def _blocks(n: int, size: int) -> Iterator[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(n, start + size)))


def _pack(
    block: list[ObjectResult],
    start: int,
    plan: ObjectPlan,
    templates: Sequence[Template],
    param_names: Sequence[str] = PARAM_NAMES,
) -> dict[str, np.ndarray]:
    idx = np.arange(start, start + len(block))
    # each array is cast once, straight into the block's rows (no float64 stack of the whole block first)
    arrays = {
        "stripes": ("stripe", np.float16),
        "flux1d": ("flux1d", np.float32),
        "ivar1d": ("ivar1d", np.float32),
        "sky1d": ("sky1d", np.float32),
        "wave1d": ("wave", np.float32),
        "flux1d_opt": ("flux1d_opt", np.float32),
        "ivar1d_opt": ("ivar1d_opt", np.float32),
    }
    out: dict[str, np.ndarray] = {}
    if any(arm.flux1d_opt is None for r in block for arm in r.arms):
        raise ValueError("a rendered arm has no optimal extraction (flux1d_opt); render with ForwardModel")
    for key, (attr, dtype) in arrays.items():
        first = getattr(block[0].arms[0], attr) if block else np.zeros(0)
        rows = np.empty((len(block), 2, *first.shape), dtype=dtype)
        for i, r in enumerate(block):
            for a, arm in enumerate(r.arms):
                rows[i, a] = getattr(arm, attr)
        out[key] = rows
    out.update(
        {
            "label": plan.cls[idx].astype(np.int8),
            "subclass": np.array([templates[r.source.template].subclass.encode() for r in block], dtype="S8"),
            "snr_r": np.array([r.snr_r for r in block], dtype=np.float32),
            "snr_bin": snr_bin(np.array([r.snr_r for r in block])),
            "split": plan.split[idx].astype(np.int8),
            "object_id": np.array([f"sim{i:07d}".encode() for i in idx], dtype="S40"),
            "template_id": np.array([templates[r.source.template].template_id.encode() for r in block], dtype="S80"),
            "flags": np.array([r.flags for r in block], dtype=np.uint16),
        }
    )
    if block and all("lamost_class" in templates[r.source.template].meta for r in block):
        # the LAMOST-convention label beside the template's own (drcnet.simulate.convention)
        out["label_lamost"] = np.array(
            [lamost_label_index(templates[r.source.template].meta["lamost_class"]) for r in block], dtype=np.int8
        )
        out["subclass_lamost"] = np.array(
            [str(templates[r.source.template].meta["lamost_subclass"]).encode() for r in block], dtype="S8"
        )
    for name in param_names:
        if name in ("teff", "logg", "feh"):
            vals = [getattr(templates[r.source.template], name) for r in block]
        else:
            vals = [r.params.get(name, np.nan) for r in block]
        out[f"params/{name}"] = np.array(vals, dtype=np.float32)
    return out


def lamost_label_index(cls: str) -> int:
    """``label_lamost`` of a LAMOST-convention class: 0 F, 1 G, 2 K, 3 other, -1 ambiguous or unknown."""
    return CLASSES_WITH_OTHER.index(cls) if cls in CLASSES_WITH_OTHER else -1


@dataclass
class PreparedDataset:
    """What a dataset is rendered from: the F/G/K templates, their split, the object plan and the model."""

    templates: list[Template]
    template_split: np.ndarray
    plan: ObjectPlan
    model: ForwardModel
    param_names: tuple[str, ...] = PARAM_NAMES
    """Per-object parameters stored under ``params/`` (a randomised model adds its own)."""

    @property
    def has_lamost_labels(self) -> bool:
        """True when every template carries its LAMOST-convention label (:mod:`drcnet.simulate.convention`)."""
        return bool(self.templates) and all("lamost_class" in t.meta for t in self.templates)

    def template_table(self) -> dict[str, object]:
        """The dataset file's ``templates`` table: one row per template (id, split, class, source, use count).

        With LAMOST-convention labels (:attr:`has_lamost_labels`) also ``lamost_class`` (F/G/K, ``other``, or
        ``""`` ambiguous), ``lamost_subclass`` (the labeller's best even when ambiguous), ``labeller`` (who
        decided) and ``label_margin`` (the spectral label's class margin, NaN when none decided).
        """
        templates = self.templates
        return {
            "template_id": [t.template_id for t in templates],
            "split": [SPLIT_NAMES[s] if s >= 0 else "" for s in self.template_split],
            "cls": [t.cls for t in templates],
            "subclass": [t.subclass for t in templates],
            "library": [t.library for t in templates],
            "lumclass": [t.lumclass for t in templates],
            "label_source": [str(t.meta.get("label_source", "")) for t in templates],
            "mk_class": [str(t.meta.get("mk_class", t.cls)) for t in templates],
            "label_margin": np.array(
                [float(t.meta.get("lamost_margin", t.meta.get("label_margin", np.nan))) for t in templates],
                dtype=np.float32,
            ),
            **(
                {
                    "lamost_class": [str(t.meta["lamost_class"]) for t in templates],
                    "lamost_subclass": [str(t.meta["lamost_subclass"]) for t in templates],
                    "labeller": [str(t.meta["lamost_labeller"]) for t in templates],
                }
                if self.has_lamost_labels
                else {}
            ),
            "path": [t.path for t in templates],
            "teff": np.array([t.teff for t in templates], dtype=np.float32),
            "n_objects": np.bincount(self.plan.template, minlength=len(templates)),
        }


def prepare_dataset(
    config: SimulationConfig, templates: Sequence[Template], data_root: str | Path | None = None
) -> PreparedDataset:
    """Split the templates, plan every object (Table 1 or ``--n``) and build the forward model.

    Parameters
    ----------
    config
        What to render; ``config.seed`` drives the split and the plan.
    templates
        Loaded templates; only F, G and K are used, unless ``config.other`` > 0: then the O/B/A/M stars and
        LAMOST galaxies/QSOs among them are rendered too, as class ``other`` (:func:`_prepare_with_other`).
    data_root
        Reference-data root for the sky and extinction curve (default ``$DRCNET_DATA``).

    Raises
    ------
    ValueError
        No F, G or K template (no other template either, with ``config.other``).
    """
    if config.other > 0:
        return _prepare_with_other(config, templates, data_root)
    rng = np.random.default_rng(config.seed)
    templates = [t for t in templates if t.cls in CLASSES]
    if not templates:
        raise ValueError("no F, G or K templates to simulate from")
    templates = attach_lamost_labels(templates, data_root)
    needed = SPLIT_NAMES if not config.all_test else ("test",)
    template_split = split_templates(templates, rng, needed)
    cells = PRESETS[config.preset] if config.preset else None
    snr_range = (config.snr_min, config.snr_max) if config.n else None
    plan = plan_objects(
        cells, templates, template_split, rng, n=config.n, snr_range=snr_range, all_test=config.all_test
    )
    site = Site.load(config.instrument, data_root)
    return PreparedDataset(templates, template_split, plan, ForwardModel(config.instrument, site, templates))


def _prepare_with_other(
    config: SimulationConfig, templates: Sequence[Template], data_root: str | Path | None
) -> PreparedDataset:
    """:func:`prepare_dataset` with ``config.other`` of the objects of class ``other`` (label 3).

    The F/G/K part is split and planned exactly as without ``other`` (same random stream, fewer objects);
    the ``other`` templates (:func:`drcnet.simulate.sources.other_templates`, plus three sky-only
    pseudo-templates when ``config.sky_fibers``) follow the F/G/K ones in the template list, are split
    by :func:`~drcnet.simulate.sources.split_other` and planned by
    :func:`~drcnet.simulate.plan.plan_other_objects` with a second stream (``[seed, 3]``), which also
    shuffles the two parts together. With ``other = 1`` no F/G/K template is needed or used.
    """

    rng = np.random.default_rng(config.seed)
    cells = PRESETS[config.preset] if config.preset else None
    snr_range = (config.snr_min, config.snr_max) if config.n else None
    other_cells, fgk_cells, fgk_n = other_counts(config.other, cells, config.n, config.all_test)
    n_fgk = sum(fgk_cells.values()) if fgk_cells is not None else int(fgk_n or 0)
    fgk = [t for t in templates if t.cls in CLASSES]
    if n_fgk and not fgk:
        raise ValueError("no F, G or K templates to simulate from (use --other 1 to render only other objects)")
    others = other_templates(templates)
    if config.sky_fibers and (others or fgk or templates):
        others += no_light_templates((others or fgk or list(templates))[0])
    if other_cells and not others:
        raise ValueError(
            "--other: none of the templates is an O/B/A/M star, galaxy or QSO and sky-only fibers are "
            "off; add such a library (e.g. miles, stelib, or a LAMOST folder) or allow sky-only fibers"
        )
    needed = SPLIT_NAMES if not config.all_test else ("test",)
    fgk_split = np.zeros(0, dtype=int)
    if fgk:
        try:
            fgk_split = split_templates(fgk, rng, needed)
        except ValueError:
            if n_fgk:
                raise
            fgk = []  # --other 1: the F/G/K stars were only neighbours, and too few to split; the others serve
    if n_fgk:
        fgk_plan = plan_objects(
            fgk_cells,
            fgk,
            fgk_split,
            rng,
            n=fgk_n if fgk_cells is None else None,
            snr_range=snr_range,
            all_test=config.all_test,
        )
    else:
        fgk_plan = ObjectPlan(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2)), np.zeros(0, int))
    other_split = split_other(others, config.all_test)
    sky = [i for i, t in enumerate(others) if t.meta.get("no_light")]
    other_split[sky] = np.arange(len(sky)) % len(SPLIT_NAMES)  # one sky pseudo-template per split
    lit = np.concatenate([fgk_split, np.where([bool(t.meta.get("no_light")) for t in others], -1, other_split)])
    for s in {int(x) for x in fgk_plan.split} | {SPLIT_NAMES.index(k[0]) for k in other_cells}:
        if not np.any(lit == s):
            raise ValueError(
                f"the {SPLIT_NAMES[s]} split has no star to put in the neighbouring fibers (only sky-only "
                "fibers); add a library with stars, or use --all-test"
            )
    orng = np.random.default_rng([config.seed, 3])
    other_plan = plan_other_objects(
        other_cells, others, other_split, snr_range, orng, sky_share=SKY_SHARE if config.sky_fibers else 0.0
    )
    all_templates = attach_lamost_labels(fgk + others, data_root)
    plan = merge_plans(fgk_plan, other_plan, len(fgk), orng)
    site = Site.load(config.instrument, data_root)
    return PreparedDataset(
        all_templates,
        np.concatenate([fgk_split, other_split]),
        plan,
        ForwardModel(config.instrument, site, all_templates),
    )


def render_blocks(
    prepared: PreparedDataset, config: SimulationConfig, workers: int | None = None
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Render every planned object, in blocks of :data:`BLOCK`, in worker processes.

    Yields
    ------
    start, arrays
        The index of the block's first object and its rows keyed like the dataset layout
        (``stripes``, ``flux1d``, ..., ``params/<name>``), in object order.
    """
    workers = workers or os.cpu_count() or 1
    plan, templates, names = prepared.plan, prepared.templates, prepared.param_names
    state = (prepared.model, plan, config, prepared.template_split, templates, names)
    blocks = list(_blocks(len(plan), BLOCK))
    if workers > 1:
        # each worker renders and packs whole blocks; the parent only writes
        with mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=state) as pool:
            yield from pool.imap(_render_packed, blocks)
    else:
        _init_worker(*state)
        for block in blocks:
            yield _render_packed(block)
