"""A training population like the survey's: real LAMOST spectra plus three libraries, on LAMOST's labels.

Sources (all F/G/K, labels on LAMOST's convention by :func:`drcnet.library.labels.to_lamost_convention`):

* ``lamost_real`` (``<data>/lamost_real``): ~1,800 real LAMOST F/G/K spectra (already observed: no second
  reddening, radial velocity or line spread; masked pixels bridged). Split **by star** (LAMOST
  designation, else file) into train / val / test = 70 / 15 / 15 % with a hash of the star name, so
  the split does not depend on which other files are present, and the val and test stars are never
  rendered into the training split. :func:`write_lamost_split` writes each part as a folder of links
  (with the ``index.csv`` rows) so a held-out part can be rendered by ``drcnet simulate --library``.
* PyHammer, MILES, STELIB (dwarfs, subgiants, giants): split 8:1:1 by source star as in
  :func:`drcnet.simulate.plan.split_templates`. They supply the K stars (lamost_real has 65) and the
  giants, reddened with E(B-V) ~ exponential (mean 0.15, up to 1.0: LAMOST's anticentre plates reach
  ~1 mag) by the forward model.

Sampling (:data:`SOURCE_SHARE`, :data:`CLASS_SHARE`): within each class, templates are drawn with
probability ``share(source) / n(source, class)``, so each source contributes its share whatever its
size; classes are balanced F 0.34 : G 0.36 : K 0.30 (LAMOST's F/G/K catalogue is G-heavy; K is kept
near a third so the scarce real K stars are not swamped). Real LAMOST stars make 90 % of the F and G
objects and 75 % of the K objects; the libraries' coverage (dwarfs to giants, [Fe/H] -2.5 to +0.5)
the rest.

``drcnet simulate-population`` renders it (:mod:`drcnet.workflows.simulate_population`).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from drcnet.conventions import CLASSES, CLASSES_WITH_OTHER, OTHER, SPLIT_NAMES
from drcnet.library import load_templates
from drcnet.library.labels import to_lamost_convention
from drcnet.library.spectral_labels import CnnLabeller
from drcnet.library.template import Template
from drcnet.simulate.dataset import PARAM_NAMES, PreparedDataset, SimulationConfig
from drcnet.simulate.plan import ObjectPlan, apportion, split_templates
from drcnet.simulate.randomize import RANDOMIZED_PARAM_NAMES, DomainRandomization, RandomizedForwardModel
from drcnet.simulate.render import ForwardModel
from drcnet.simulate.site import Site
from drcnet.simulate.sources import (  # noqa: F401  (re-exported: the population's split and sampling rules)
    LAMOST_SPLIT_FRACTIONS,
    LIBRARY_SPLIT_FRACTIONS,
    OTHER_SHARE,
    at_fa_boundary,
    check_split_fractions,
    lamost_split_of,
    no_light_templates,
    other_templates,
    source_group,
    split_other,
    star_key,
)


def real_share(real: float, libraries: dict[str, float]) -> dict[str, float]:
    """Source shares of one class: ``real`` for ``lamost``, the rest split in the libraries' proportions.

    Parameters
    ----------
    real : float
        Share of real LAMOST stars, in [0, 1].
    libraries : dict
        Relative weights of the libraries (``{"miles": 0.15, ...}``); only their ratios matter.

    Raises
    ------
    ValueError
        If ``real`` lies outside [0, 1] or the library weights do not sum to a positive number.
    """
    total = sum(libraries.values())
    if not 0.0 <= real <= 1.0 or total <= 0:
        raise ValueError(f"a real share must lie in [0, 1] with positive library weights, got {real}, {libraries}")
    return {"lamost": real, **{k: (1.0 - real) * v / total for k, v in libraries.items()}}


SOURCE_SHARE: dict[str, dict[str, float]] = {
    "F": real_share(0.9, {"miles": 0.15, "pyhammer": 0.1, "stelib": 0.1}),
    "G": real_share(0.9, {"miles": 0.15, "pyhammer": 0.1, "stelib": 0.1}),
    "K": real_share(0.75, {"miles": 0.3, "pyhammer": 0.15, "stelib": 0.2}),
}
"""Share of each source's templates among the objects of one class (renormalised over the sources present).

Real LAMOST stars decide LAMOST's boundaries (F9/G0, F0/A, K/M), so they make 0.9 of the F and G objects
(~600 training stars of each) and 0.75 of the K objects; the libraries keep their mutual proportions
(MILES 0.15 : PyHammer 0.1 : STELIB 0.1 for F and G, 0.3 : 0.15 : 0.2 for K) and add giants, reddening
and metallicity range. Why so high, and why K too (issue 22, measured on the validation stars): with F
and G at 0.65 real, the model calls LAMOST F9 stars G (0.26 right above S/N_r 30); at 0.9 F/G but K left
at 0.35, F rose 6 points and F9 to 0.40 but real K stars lost 11 points: a real LAMOST spectrum's look
(its flux calibration, sky residuals) then says "F or G" to the model, a shortcut from source to class.
Giving K nearly the same real share (``lamost_real`` holds ~50 K training stars, each then rendered ~37
times per 10,000 objects under a fresh instrument draw) removes the shortcut: K 0.91, F 0.80, F9 0.43.
Issue 22's first round: 0.65 / 0.15 / 0.1 / 0.1 (F, G) and 0.35 / 0.3 / 0.15 / 0.2 (K); before issue 22
0.5 / 0.2 / 0.15 / 0.15 for every class."""
CLASS_SHARE: dict[str, float] = {"F": 0.34, "G": 0.36, "K": 0.30}
"""Share of each class among the F/G/K objects."""
LIBRARY_FOLDERS = ("spectral_libraries/pyhammer", "spectral_libraries/miles", "spectral_libraries/stelib")
LAMOST_FOLDER = "lamost_real"


#: Classes the spectral labeller learns from the real stars: F/G/K and the boundary classes A and M.
LABELLER_CLASSES = ("A", "F", "G", "K", "M")


def labeller_training_set(
    templates: Sequence[Template], lamost_fractions: Sequence[float] = LAMOST_SPLIT_FRACTIONS
) -> list[Template]:
    """The real LAMOST stars :func:`fit_labeller` learns from: training split, class in :data:`LABELLER_CLASSES`."""
    from drcnet.library.labels import with_lamost_parameters

    return [
        with_lamost_parameters(t)
        for t in templates
        if t.library == "lamost"
        and t.cls in LABELLER_CLASSES
        and t.subclass
        and lamost_split_of(star_key(t), lamost_fractions) == 0
    ]


def fit_labeller(
    templates: Sequence[Template], lamost_fractions: Sequence[float] = LAMOST_SPLIT_FRACTIONS, seed: int = 0
) -> CnnLabeller | None:
    """The spectral labeller of the library stars, trained on the real LAMOST stars of the training split.

    Only training-split stars (:func:`lamost_split_of`) teach it, so no label of a validation or test star
    reaches the training population through a relabelled library star. About 40 s on one core for ~1,600
    spectra (:class:`~drcnet.library.spectral_labels.CnnLabeller`, seeded: the same labels every run).
    Returns None when fewer than 50 such spectra are present (the parameter vote decides then).
    """
    train = labeller_training_set(templates, lamost_fractions)
    if len(train) < 50:
        return None
    return CnnLabeller(representation="norm", seed=seed).fit(train)


def load_population(
    data_root: str | Path,
    seed: int = 0,
    include: Sequence[str] = ("lamost", "pyhammer", "miles", "stelib"),
    other: bool = False,
    lamost_fractions: Sequence[float] = LAMOST_SPLIT_FRACTIONS,
    spectral_labels: bool = True,
) -> tuple[list[Template], np.ndarray]:
    """Load every source, put labels on LAMOST's convention and split by star.

    With ``other``, the sources' O/B/A/M stars, LAMOST galaxies and QSOs (:func:`drcnet.library.labels.other_label`)
    and three no-light pseudo-templates (:func:`no_light_templates`) are added as class ``other``.
    ``lamost_fractions`` are the train/val/test shares of the real LAMOST stars (hash of the star's name,
    :func:`lamost_split_of`); since the hash decides, moving the validation share into train, e.g.
    ``(0.85, 0.0, 0.15)``, keeps exactly the same test stars (a final refit on every star not held out).
    With ``spectral_labels`` the library stars are labelled from their spectra by :func:`fit_labeller`
    (ambiguous ones are left out); without, by the parameter vote alone.

    Returns
    -------
    templates, template_split
        The templates and their split index (0 train, 1 val, 2 test).
    """
    root = Path(data_root)
    paths = []
    if "lamost" in include:
        paths.append(root / LAMOST_FOLDER)
    paths += [root / f for f in LIBRARY_FOLDERS if f.split("/")[-1] in include]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = load_templates(paths, classes=None)
    has_library = any(t.library != "lamost" for t in res.templates)
    labeller = fit_labeller(res.templates, lamost_fractions, seed) if spectral_labels and has_library else None
    on_lamost = to_lamost_convention(res.templates, labeller=labeller)
    templates = [t for t in on_lamost if t.cls in CLASSES]
    split = np.full(len(templates), -1, dtype=int)
    lam = [i for i, t in enumerate(templates) if t.library == "lamost"]
    for i in lam:
        split[i] = lamost_split_of(star_key(templates[i]), lamost_fractions)
    lib = [i for i, t in enumerate(templates) if t.library != "lamost"]
    if lib:
        split[lib] = split_templates([templates[i] for i in lib], np.random.default_rng(seed))
    if other:
        others = other_templates(on_lamost)
        templates += others
        split = np.concatenate([split, split_other(others, all_test=False, lamost_fractions=lamost_fractions)])
    if other and templates:
        templates += no_light_templates(templates[0])
        split = np.concatenate([split, np.arange(len(SPLIT_NAMES))])
    return templates, split


def sampling_weights(
    templates: Sequence[Template], template_split: np.ndarray, split: int, boundary_weight: float = 1.0
) -> np.ndarray:
    """Probability of drawing each template for an object of its class in ``split`` (sums to 1 per class).

    Within a class each source group gets its share (:data:`SOURCE_SHARE`, :data:`OTHER_SHARE`), and
    within a group every template is drawn equally often, except that templates :func:`~drcnet.simulate.sources.at_fa_boundary`
    (LAMOST's late-A stars) are drawn ``boundary_weight`` times as often as the rest of their group; the
    group's share stays the same.

    Raises
    ------
    ValueError
        ``boundary_weight`` not a finite number > 0.
    """
    if not (math.isfinite(boundary_weight) and boundary_weight > 0):
        raise ValueError(f"boundary_weight must be a finite number > 0, got {boundary_weight}")
    w = np.zeros(len(templates))
    for c in CLASSES_WITH_OTHER:
        share = OTHER_SHARE if c == OTHER else SOURCE_SHARE[c]
        members = [i for i, t in enumerate(templates) if t.cls == c and template_split[i] == split]
        emphasis = {i: boundary_weight if at_fa_boundary(templates[i]) else 1.0 for i in members}
        mass: dict[str, float] = {}
        for i in members:
            g = source_group(templates[i])
            mass[g] = mass.get(g, 0.0) + emphasis[i]
        total = sum(share.get(g, 0.1) for g in mass)
        for i in members:
            g = source_group(templates[i])
            w[i] = share.get(g, 0.1) / total * emphasis[i] / mass[g]
    return w


def plan_population(
    templates: Sequence[Template],
    template_split: np.ndarray,
    counts: dict[str, int],
    snr_range: tuple[float, float],
    rng: np.random.Generator,
    other_share: float = 0.0,
    boundary_weight: float = 1.0,
) -> ObjectPlan:
    """Objects per split (``{"train": N, ...}``) with classes by :data:`CLASS_SHARE`, free S/N.

    ``other_share`` of the objects are class ``other`` (label 3); the F/G/K shares scale down to fill the rest.
    ``boundary_weight`` (:func:`sampling_weights`) applies to the training split only: validation and test
    objects keep the survey's own mix.
    """
    classes = CLASSES_WITH_OTHER if other_share > 0 else CLASSES
    shares = [CLASS_SHARE[c] * (1.0 - other_share) for c in CLASSES] + ([other_share] if other_share > 0 else [])
    cls_l, split_l, tmpl_l = [], [], []
    for name, n in counts.items():
        s = SPLIT_NAMES.index(name)
        if n > 0 and not (template_split == s).any():
            raise ValueError(
                f"{n} {name} objects asked for, but no source spectrum is in the {name} split (with these "
                "--include sources and --lamost-shares); ask for 0 or change the shares"
            )
        w = sampling_weights(templates, template_split, s, boundary_weight if name == "train" else 1.0)
        for c, k in zip(classes, apportion(n, shares), strict=True):
            idx = np.flatnonzero([(t.cls == c) and template_split[i] == s for i, t in enumerate(templates)])
            if k == 0:
                continue
            if idx.size == 0:
                warnings.warn(
                    f"no {c} source spectrum in the {name} split: its {int(k)} {c} objects are not rendered "
                    f"(the file holds {int(n - k)} {name} objects or fewer)",
                    stacklevel=2,
                )
                continue
            p = w[idx] / w[idx].sum()
            tmpl_l.append(rng.choice(idx, size=int(k), p=p))
            cls_l.append(np.full(int(k), CLASSES_WITH_OTHER.index(c)))
            split_l.append(np.full(int(k), s))
    cls = np.concatenate(cls_l)
    order = rng.permutation(cls.size)
    n = cls.size
    return ObjectPlan(
        cls=cls[order],
        split=np.concatenate(split_l)[order],
        snr_bin=np.full(n, -1),
        snr_range=np.tile(np.asarray(snr_range, dtype=float), (n, 1)),
        template=np.concatenate(tmpl_l)[order],
    )


def write_lamost_split(templates: Sequence[Template], template_split: np.ndarray, split: int, out: str | Path) -> Path:
    """Folder of links to the real LAMOST files of one split, with their ``index.csv`` rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {Path(t.path) for i, t in enumerate(templates) if t.library == "lamost" and template_split[i] == split}
    rows = []
    for f in sorted(files):
        link = out / f.name
        if not link.exists():
            os.symlink(f.resolve(), link)
        rows.append(f.name)
    src = next(iter(files)).parent / "index.csv" if files else None
    if src is not None and src.is_file():
        with open(src, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            keep = [r for r in reader if r["file"] in set(rows)]
            fields = reader.fieldnames or []
        with open(out / "index.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(keep)
    return out


def prepare_population(
    data_root: str | Path,
    counts: dict[str, int],
    seed: int = 0,
    snr_range: tuple[float, float] | None = None,
    randomize: bool = True,
    include: Sequence[str] = ("lamost", "pyhammer", "miles", "stelib"),
    randomization: DomainRandomization | None = None,
    other_share: float = 0.0,
    lamost_fractions: Sequence[float] = LAMOST_SPLIT_FRACTIONS,
    spectral_labels: bool = True,
    boundary_weight: float = 1.0,
) -> tuple[SimulationConfig, PreparedDataset]:
    """The survey population's templates, split, plan and (domain-randomised) forward model.

    Parameters
    ----------
    data_root
        Reference-data root (``lamost_real`` and ``spectral_libraries`` under it).
    counts
        Objects per split, e.g. ``{"train": 8000, "val": 1000}``.
    seed
        Seeds the library split, the plan and the rendering.
    snr_range
        S/N_r range, drawn log-uniformly (default: the randomisation's ``snr_range``, 2-150).
    randomize
        Domain randomisation (:class:`~drcnet.simulate.randomize.RandomizedForwardModel`); ``False``
        renders with the nominal instrument (for evaluation files).
    include
        Sources to render (the LAMOST stars always define the label map).
    other_share
        Share of the objects that are class ``other`` (:data:`OTHER_SHARE` says from which sources);
        0 renders F/G/K stars only.
    lamost_fractions
        Train/val/test shares of the real LAMOST stars (:func:`load_population`).
    spectral_labels
        Library stars labelled from their spectra (default) or by the parameter vote alone
        (:func:`load_population`).
    boundary_weight
        How much more often the training split draws LAMOST's late-A stars (A6-A9, class ``other``) than the
        other real A stars (:func:`sampling_weights`); 1 draws them equally.

    Returns
    -------
    config, prepared
        The :class:`~drcnet.simulate.dataset.SimulationConfig` stored in the file and the
        :class:`~drcnet.simulate.dataset.PreparedDataset` to render.
    """
    from drcnet.instrument import InstrumentConfig

    root = Path(data_root)
    if not 0.0 <= other_share < 1.0:
        raise ValueError(f"other_share must be in [0, 1), got {other_share}")
    lamost_fractions = check_split_fractions(lamost_fractions)
    templates, tsplit = load_population(
        root, seed=seed, other=other_share > 0, lamost_fractions=lamost_fractions, spectral_labels=spectral_labels
    )
    keep = [i for i, t in enumerate(templates) if t.library in set(include) or t.library == "sky"]
    templates, tsplit = [templates[i] for i in keep], tsplit[keep]
    dr = randomization or DomainRandomization()
    snr = snr_range or dr.snr_range
    cfg = SimulationConfig(
        libraries=[str(root / LAMOST_FOLDER)] + [str(root / f) for f in LIBRARY_FOLDERS],
        n=sum(counts.values()),
        snr_min=snr[0],
        snr_max=snr[1],
        seed=seed,
        ebv_mean=0.15,
        ebv_max=1.0,
        instrument=InstrumentConfig(),
    )
    plan = plan_population(
        templates,
        tsplit,
        counts,
        snr,
        np.random.default_rng(seed),
        other_share=other_share,
        boundary_weight=boundary_weight,
    )
    site = Site.load(cfg.instrument, root)
    if randomize:
        model: ForwardModel = RandomizedForwardModel(cfg.instrument, site, templates, dr)
        names = PARAM_NAMES + RANDOMIZED_PARAM_NAMES
    else:
        model, names = ForwardModel(cfg.instrument, site, templates), PARAM_NAMES
    return cfg, PreparedDataset(templates, tsplit, plan, model, tuple(names))


def split_counts(templates: Sequence[Template], template_split: np.ndarray) -> dict[str, dict[str, int]]:
    """``{split: {"library:class": n}}``: how many templates of each source and class went where."""
    out: dict[str, dict[str, int]] = {}
    for s, name in enumerate(SPLIT_NAMES):
        by: dict[str, int] = {}
        for i, t in enumerate(templates):
            if template_split[i] == s:
                by[f"{t.library}:{t.cls}"] = by.get(f"{t.library}:{t.cls}", 0) + 1
        out[name] = dict(sorted(by.items()))
    return out
