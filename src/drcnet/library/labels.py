# Over 400 lines on purpose: LAMOST's label convention kept in one place (every source, both labels, the vote).
"""One label convention for every source: LAMOST's.

LAMOST's 1D pipeline labels (``CLASS``/``SUBCLASS``) are the truth that the DRC-Net paper and the
survey's users compare against, so every training label is put on that convention here, in one place:

* **LAMOST spectra** keep their pipeline label (``SUBCLASS`` ``"G5"`` -> class G, subclass G5); the
  luminosity class, which LAMOST's subclass does not carry, comes from the LASP ``logg`` when it is
  known (:func:`lumclass_from_logg`).
* **Library stars** (PyHammer, MILES, STELIB) carry MK types on the Teff-ordered dwarf scale, which
  disagrees with LAMOST exactly where it matters: a LAMOST "F9" is often a metal-poor star with a G
  dwarf's Teff, a LAMOST "G5" is usually a ~4,900 K giant (``../shared/data/lamost_real/README.md``).
  :class:`LamostLabelMap` learns LAMOST's class as a function of (Teff, logg, [Fe/H]) from the real
  LAMOST spectra that carry LASP parameters (k nearest neighbours, k = 7, in units of 250 K, 0.5 dex,
  0.5 dex) and relabels a library star when its parameters lie inside the region the real stars cover
  (at least ``k`` reference stars within distance 1.5); outside that region (e.g. K dwarfs below
  5,000 K, of which lamost_real has 7 with parameters) the MK class is kept. What happened to each
  star is recorded in ``meta["label_source"]``: ``"lamost"``, ``"lamost_knn"`` or ``"mk"``.
* **Labels from spectra** (the survey population, issue 22): with a spectral labeller
  (:class:`drcnet.library.spectral_labels.CnnLabeller`, trained on the real LAMOST spectra of the
  training split) a library star inside the real stars' region is labelled from its spectrum at LAMOST
  resolution, as LAMOST's template match labels it; the parameter vote cannot see what makes a LAMOST
  "F9" (a metal-rich star of solar temperature: deeper metal lines). A star whose class margin is below
  :data:`SPECTRAL_MIN_MARGIN` is ``"ambiguous"`` and left out (class ``""``) rather than trained on a
  guess; outside the region (no 7 real stars within 1.5 units, or Teff < :data:`SPECTRAL_MIN_TEFF`: cool
  giants that ``lamost_real`` barely holds) the labeller would extrapolate and the MK class is kept.
  ``meta["label_source"]`` then names the labeller (``"cnn/norm"``), ``meta["label_margin"]`` its margin.

Strings that are not MK types are never guessed (:func:`~drcnet.library.spectype.parse_spectral_type`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .spectype import parse_spectral_type
from .template import Template

if TYPE_CHECKING:
    from .spectral_labels import CnnLabeller, SpectralLabel, TemplateMatchLabeller

    SpectralLabeller = CnnLabeller | TemplateMatchLabeller

#: Scale of each parameter in the neighbour distance: (Teff K, logg dex, [Fe/H] dex). 250 K is about
#: one LAMOST F/G subclass step and 2x LASP's Teff error at S/N 10-20; 0.5 dex separates dwarfs,
#: subgiants and giants; 0.5 dex in [Fe/H] is the width of a PyHammer metallicity bin.
PARAM_SCALE = (250.0, 0.5, 0.5)
#: Neighbours voted over, and the distance (in the scaled units) inside which they must all lie for
#: the map to be trusted.
K_NEIGHBOURS = 7
MAX_DISTANCE = 1.5
#: log g below which an F/G/K star is a giant (cgs dex): the usual Kiel-diagram split, also used by
#: the evaluation's luminosity-class groups (:mod:`drcnet.data.groups`).
GIANT_LOGG = 3.5
#: Assumed [Fe/H] when a library star has none (solar neighbourhood mean).
DEFAULT_FEH = 0.0
#: Class margin (probability of the winning class minus the runner-up's) below which a spectral label
#: is ambiguous: cross-validated on the real stars (benchmarks/real_stars/label_ceiling.py), the 89 % of
#: spectra with margin >= 0.3 are labelled right in 0.926 (all: 0.894).
SPECTRAL_MIN_MARGIN = 0.3
#: Below this Teff (K) a library star is outside what the real stars teach the labeller (lamost_real
#: holds few stars cooler than ~4,600 K, most of them dwarfs): the labeller would call 4,000-4,600 K
#: giants G; their MK class is kept.
SPECTRAL_MIN_TEFF = 4600.0


def lumclass_from_logg(logg: float) -> str:
    """Luminosity class from surface gravity (cgs): < 3.5 giant III, 3.5-4.0 subgiant IV, else dwarf V.

    Returns ``""`` for NaN. The cuts follow the usual Kiel-diagram split of F/G/K stars (giants below
    log g 3.5, e.g. the LAMOST "G5" giants at median log g 2.7).
    """
    if not math.isfinite(logg):
        return ""
    if logg < GIANT_LOGG:
        return "III"
    if logg < 4.0:
        return "IV"
    return "V"


def lamost_label(class_raw: str, subclass_raw: str) -> tuple[str, str]:
    """Class and subclass of a LAMOST ``CLASS``/``SUBCLASS`` pair, ``("", "")`` when not a typed star.

    >>> lamost_label("STAR", "G5")
    ('G', 'G5')
    >>> lamost_label("GALAXY", "Non")
    ('', '')
    """
    if str(class_raw).strip().upper() != "STAR":
        return "", ""
    st = parse_spectral_type(subclass_raw)
    if not st.parsed:
        return "", ""
    return st.cls, st.subclass or st.cls


def read_lamost_index(folder: str | Path) -> dict[str, dict[str, float]]:
    """LASP parameters from ``<folder>/index.csv`` keyed by file name: ``{"teff", "logg", "feh"}`` (NaN unknown)."""
    path = Path(folder) / "index.csv"
    if not path.is_file():
        return {}
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            vals = {}
            for key in ("teff", "logg", "feh"):
                try:
                    vals[key] = float(row.get(key) or "nan")
                except ValueError:
                    vals[key] = math.nan
            out[row["file"]] = vals
    return out


def with_lamost_parameters(t: Template, index: Mapping[str, Mapping[str, float]] | None = None) -> Template:
    """A LAMOST template with LASP Teff/logg/[Fe/H] (from ``index.csv`` beside it) and luminosity class.

    Non-LAMOST templates are returned unchanged.
    """
    if t.library != "lamost":
        return t
    if index is None:
        index = read_lamost_index(Path(t.path).parent)
    p = index.get(Path(t.path).name, {})
    teff, logg, feh = (float(p.get(k, getattr(t, k))) for k in ("teff", "logg", "feh"))
    meta = dict(t.meta, label_source="lamost", observed=True)
    return replace(t, teff=teff, logg=logg, feh=feh, lumclass=t.lumclass or lumclass_from_logg(logg), meta=meta)


@dataclass
class LamostLabelMap:
    """k-nearest-neighbour map (Teff, logg, [Fe/H]) -> LAMOST class and subclass.

    Build it with :meth:`fit` from LAMOST templates that carry LASP parameters (any class: the A and M
    stars mark where F and K end).
    """

    points: np.ndarray
    """(N, 3) scaled parameters of the reference stars."""
    classes: list[str]
    subclasses: list[str]
    k: int = K_NEIGHBOURS
    max_distance: float = MAX_DISTANCE

    @staticmethod
    def scale(teff: float, logg: float, feh: float) -> np.ndarray:
        """Parameters in units of :data:`PARAM_SCALE`."""
        return np.array([teff / PARAM_SCALE[0], logg / PARAM_SCALE[1], feh / PARAM_SCALE[2]])

    @classmethod
    def fit(cls, lamost: Sequence[Template]) -> LamostLabelMap:
        """Reference set: every LAMOST template with finite Teff, logg and [Fe/H] and a class."""
        pts, cl, sub = [], [], []
        for t in lamost:
            if t.library == "lamost" and t.cls and all(math.isfinite(v) for v in (t.teff, t.logg, t.feh)):
                pts.append(cls.scale(t.teff, t.logg, t.feh))
                cl.append(t.cls)
                sub.append(t.subclass or t.cls)
        if len(pts) < K_NEIGHBOURS:
            raise ValueError(f"only {len(pts)} LAMOST spectra with LASP parameters; need >= {K_NEIGHBOURS}")
        return cls(np.array(pts), cl, sub)

    @classmethod
    def from_index(cls, path: str | Path) -> LamostLabelMap:
        """Reference set from ``lamost_real/index.csv`` alone (no FITS file read), for the region check.

        The same stars as :meth:`fit` on the loaded templates, plus the few whose spectra the loader skips
        (too little wavelength coverage): their LASP parameters and LAMOST label still mark the region.

        Parameters
        ----------
        path
            The index (columns ``file``, ``cls`` = LAMOST ``CLASS`` such as ``STAR``, ``subclass`` = LAMOST
            ``SUBCLASS`` such as ``G5``, ``teff`` K, ``logg`` dex, ``feh`` dex; empty when LASP gave none), or
            the folder holding it.

        Raises
        ------
        FileNotFoundError
            No index there.
        ValueError
            Naming the file: a column is missing, or fewer than ``K_NEIGHBOURS`` typed stars carry parameters.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "index.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: LAMOST index not found (expected <data>/lamost_real/index.csv)")
        pts, cl, sub = [], [], []
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("cls", "subclass", "teff", "logg", "feh") if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{path}: index lacks column(s) {', '.join(missing)}; it is not lamost_real's index.csv"
                )
            for row in reader:
                c, s = lamost_label(row["cls"], row["subclass"])
                try:
                    vals = [float(row[k] or "nan") for k in ("teff", "logg", "feh")]
                except ValueError:
                    continue
                if c and all(math.isfinite(v) for v in vals):
                    pts.append(cls.scale(*vals))
                    cl.append(c)
                    sub.append(s or c)
        if len(pts) < K_NEIGHBOURS:
            raise ValueError(f"{path}: only {len(pts)} typed LAMOST stars with LASP parameters; need >= {K_NEIGHBOURS}")
        return cls(np.array(pts), cl, sub)

    def predict(self, teff: float, logg: float, feh: float) -> tuple[str, str] | None:
        """LAMOST (class, subclass) at these parameters, or None outside the reference region.

        The class is the majority of the ``k`` nearest reference stars; the subclass is the most common
        subclass among those neighbours of that class (a tie: the one with the nearest member). None when Teff or logg is unknown, or when the
        ``k``-th neighbour is farther than ``max_distance``.
        """
        if not (math.isfinite(teff) and math.isfinite(logg)):
            return None
        q = self.scale(teff, logg, feh if math.isfinite(feh) else DEFAULT_FEH)
        d = np.sqrt(((self.points - q) ** 2).sum(axis=1))
        order = np.argsort(d, kind="stable")[: self.k]
        if d[order[-1]] > self.max_distance:
            return None
        votes: dict[str, int] = {}
        for i in order:
            votes[self.classes[i]] = votes.get(self.classes[i], 0) + 1
        best = max(votes, key=lambda c: (votes[c], -min(d[i] for i in order if self.classes[i] == c)))
        subs = [self.subclasses[i] for i in order if self.classes[i] == best]  # nearest first
        # a tie goes to the subclass with the nearest member (dict keeps first appearance; a set's order
        # would change with the interpreter's string hashing from run to run)
        return best, max(dict.fromkeys(subs), key=subs.count)

    def relabel(self, t: Template) -> Template:
        """A library template on LAMOST's convention (``meta["mk_class"]`` keeps the MK class)."""
        if t.library == "lamost":
            return t
        lum = t.lumclass or lumclass_from_logg(t.logg)
        meta = dict(t.meta, mk_class=t.cls, mk_subclass=t.subclass)
        hit = self.predict(t.teff, t.logg, t.feh)
        if hit is None:
            meta["label_source"] = "mk"
            return replace(t, lumclass=lum, meta=meta)
        meta["label_source"] = "lamost_knn"
        return replace(t, cls=hit[0], subclass=hit[1], lumclass=lum, meta=meta)


def spectral_relabel(
    t: Template,
    label: SpectralLabel | None,
    label_map: LamostLabelMap | None,
    min_margin: float = SPECTRAL_MIN_MARGIN,
    trust_without_map: bool = False,
) -> Template:
    """A library template on LAMOST's convention from its spectral label (see the module docstring).

    Parameters
    ----------
    t
        A library template (MK labels).
    label
        Its :class:`~drcnet.library.spectral_labels.SpectralLabel`, or None where its spectrum could not be
        put on the labeller's grid (the parameter vote decides then).
    label_map
        The parameter vote: its region decides where the spectral label is trusted, and it labels the
        stars without a spectral label.
    min_margin
        Class margin below which the star is ``"ambiguous"`` (class ``""``: left out of every class).
    trust_without_map
        With no ``label_map`` (the real stars' region is unknown, e.g. no ``lamost_real/index.csv``), trust
        the spectral label everywhere (above :data:`SPECTRAL_MIN_TEFF`) instead of keeping the MK class.
    """
    if t.library == "lamost":
        return t
    if label_map is None and trust_without_map:
        inside = True
    else:
        inside = label_map is not None and label_map.predict(t.teff, t.logg, t.feh) is not None
    if label is None or not inside or not (math.isfinite(t.teff) and t.teff >= SPECTRAL_MIN_TEFF):
        return label_map.relabel(t) if label_map is not None else t
    lum = t.lumclass or lumclass_from_logg(t.logg)
    meta = dict(
        t.meta,
        mk_class=t.cls,
        mk_subclass=t.subclass,
        label_source=label.labeller,
        label_margin=round(float(label.margin), 4),
    )
    if label.margin < min_margin:
        meta["label_source"] = "ambiguous"
        return replace(t, cls="", subclass="", lumclass=lum, meta=meta)
    return replace(t, cls=label.cls, subclass=label.subclass, lumclass=lum, meta=meta)


def spectral_labels_of(
    templates: Sequence[Template], rows: Sequence[int], labeller: SpectralLabeller
) -> dict[int, SpectralLabel]:
    """``{row: SpectralLabel}`` for ``templates[row]`` of each of ``rows`` whose spectrum fits the labeller's grid.

    A spectrum with too little flux on the grid (:func:`drcnet.library.spectral_labels.prepare` raises) gets
    no entry: the caller falls back to the parameter vote (or the MK class).
    """
    from .spectral_labels import prepare

    kept, xs = [], []
    for i in rows:
        try:
            xs.append(prepare(templates[i], labeller.representation))
            kept.append(i)
        except ValueError:
            continue
    if not kept:
        return {}
    return dict(zip(kept, labeller.predict([templates[i] for i in kept], x=np.stack(xs)), strict=True))


def to_lamost_convention(
    templates: Sequence[Template],
    label_map: LamostLabelMap | None = None,
    labeller: SpectralLabeller | None = None,
    min_margin: float = SPECTRAL_MIN_MARGIN,
) -> list[Template]:
    """Every template on LAMOST's label convention (see the module docstring).

    LAMOST templates get their LASP parameters and luminosity class; library templates are relabelled
    by ``labeller`` (a fitted spectral labeller, :func:`spectral_relabel`) where given, else by
    ``label_map`` (default: fitted on the LAMOST templates given here, if any carry parameters). A
    library spectrum that cannot be put on the labeller's grid falls back to the parameter vote.
    """
    lam = [with_lamost_parameters(t) for t in templates if t.library == "lamost"]
    if label_map is None:
        try:
            label_map = LamostLabelMap.fit(lam)
        except ValueError:
            label_map = None
    spectral: dict[int, SpectralLabel] = {}
    if labeller is not None:
        spectral = spectral_labels_of(
            templates, [i for i, t in enumerate(templates) if t.library != "lamost"], labeller
        )
    it = iter(lam)
    out = []
    for i, t in enumerate(templates):
        if t.library == "lamost":
            out.append(next(it))
        elif labeller is not None:
            out.append(spectral_relabel(t, spectral.get(i), label_map, min_margin))
        elif label_map is not None:
            out.append(label_map.relabel(t))
        else:
            out.append(t)
    return out


#: MK class letters that are not F/G/K stars and become the ``other`` class.
OTHER_MK_CLASSES: tuple[str, ...] = ("O", "B", "A", "M")
#: LAMOST ``CLASS`` values other than STAR that become the ``other`` class.
OTHER_LAMOST_CLASSES: tuple[str, ...] = ("GALAXY", "QSO")


def other_label(t: Template) -> Template | None:
    """The template relabelled as class ``other`` if it is not an F/G/K star, else ``None``.

    O/B/A/M stars (on LAMOST's convention already: :func:`to_lamost_convention`) keep their subclass
    (``"A7"``, ``"M2"``); LAMOST galaxies and QSOs get subclass ``"GALAXY"`` / ``"QSO"``. The original
    class letter or LAMOST class goes to ``meta["mk_class"]``. Unknown or unparsed labels return ``None``
    (never guessed).
    """
    from drcnet.conventions import OTHER

    raw = str(t.meta.get("class_raw", "")).strip().upper() if t.library == "lamost" else ""
    if raw in OTHER_LAMOST_CLASSES:
        return replace(t, cls=OTHER, subclass=raw, meta={**t.meta, "mk_class": raw})
    if t.cls in OTHER_MK_CLASSES:
        return replace(t, cls=OTHER, meta={**t.meta, "mk_class": t.cls})
    return None


@dataclass(frozen=True)
class ConventionLabel:
    """A template's label on LAMOST's convention, recorded beside its own (MK or LAMOST) label.

    Attributes
    ----------
    cls : str
        ``"F"``, ``"G"``, ``"K"``; ``"other"`` for a star LAMOST would call A/M (or O/B), a galaxy, a QSO or a
        sky-only pseudo-template; ``""`` when ambiguous (class margin below :data:`SPECTRAL_MIN_MARGIN`) or unknown.
    subclass : str
        LAMOST subclass (``"F9"``); for an ambiguous star the labeller's best subclass all the same (LAMOST's
        template match always names one), so a catalogue can carry it.
    labeller : str
        Who decided: ``"lamost"`` (a real LAMOST spectrum: its own label), the spectral labeller's name
        (``"cnn/norm"``), ``"ambiguous"``, ``"lamost_knn"`` (parameter vote), ``"mk"`` (outside the real stars'
        region: the MK class kept) or ``"other"`` (an ``other`` object keeps ``other``).
    margin : float
        The spectral label's class margin (NaN when no spectral label decided).
    """

    cls: str
    subclass: str
    labeller: str
    margin: float = math.nan


def lamost_convention_labels(
    templates: Sequence[Template],
    labeller: SpectralLabeller | None,
    label_map: LamostLabelMap | None,
    min_margin: float = SPECTRAL_MIN_MARGIN,
) -> list[ConventionLabel]:
    """Every template's LAMOST-convention label (:class:`ConventionLabel`), its own label left as it is.

    * Real LAMOST templates: their own label (``labeller`` ``"lamost"``).
    * Templates of class ``other`` (:func:`other_label`, sky-only pseudo-templates): ``other``.
    * Library F/G/K stars: :func:`spectral_relabel` with ``labeller`` and the parameter vote's region
      ``label_map``; with no ``label_map`` the region is unknown and the spectral label is trusted wherever its
      margin is at least ``min_margin`` (above :data:`SPECTRAL_MIN_TEFF`; cooler stars keep their MK class).
      A star LAMOST would call A or M becomes ``other``. Without a labeller, the parameter vote alone (or the MK
      class, with no map either).
    """
    from drcnet.conventions import CLASSES, OTHER

    found: dict[int, SpectralLabel] = {}
    lib = [i for i, t in enumerate(templates) if t.library != "lamost" and t.cls in CLASSES]
    if labeller is not None and lib:
        found = spectral_labels_of(templates, lib, labeller)
    out = []
    for i, t in enumerate(templates):
        if t.cls == OTHER:
            out.append(ConventionLabel(OTHER, t.subclass, OTHER))
            continue
        if t.library == "lamost" or t.cls not in CLASSES:
            out.append(
                ConventionLabel(
                    t.cls if t.cls in CLASSES else "",
                    t.subclass if t.cls in CLASSES else "",
                    "lamost" if t.library == "lamost" else "unknown",
                )
            )
            continue
        lab = found.get(i)
        if labeller is not None:
            r = spectral_relabel(t, lab, label_map, min_margin, trust_without_map=label_map is None)
        else:
            r = label_map.relabel(t) if label_map is not None else replace(t, meta={**t.meta, "label_source": "mk"})
        source = str(r.meta.get("label_source", "mk"))
        margin = float(r.meta["label_margin"]) if "label_margin" in r.meta else math.nan
        if not r.cls:
            out.append(ConventionLabel("", lab.subclass if lab is not None else "", "ambiguous", margin))
        elif r.cls in CLASSES:
            out.append(ConventionLabel(r.cls, r.subclass, source, margin))
        elif r.cls in OTHER_MK_CLASSES:
            out.append(ConventionLabel(OTHER, r.subclass, source, margin))
        else:
            out.append(ConventionLabel("", "", source, margin))
    return out


#: ``meta`` keys under which :func:`with_convention_labels` stores a template's LAMOST-convention label.
CONVENTION_META = ("lamost_class", "lamost_subclass", "lamost_labeller", "lamost_margin")


def with_convention_labels(templates: Sequence[Template], labels: Sequence[ConventionLabel]) -> list[Template]:
    """The templates with their :class:`ConventionLabel` in ``meta`` (:data:`CONVENTION_META`); labels unchanged."""
    return [
        replace(
            t,
            meta={
                **t.meta,
                "lamost_class": c.cls,
                "lamost_subclass": c.subclass,
                "lamost_labeller": c.labeller,
                "lamost_margin": c.margin,
            },
        )
        for t, c in zip(templates, labels, strict=True)
    ]
