"""Which sources a simulation draws, how they are labelled ``other``, and which split a star goes to.

Shared by ``drcnet simulate`` (:mod:`drcnet.simulate.dataset`, :mod:`drcnet.simulate.plan`), the survey
population (:mod:`drcnet.simulate.population`) and whole exposures (:mod:`drcnet.simulate.exposure`):

* splits by a hash of the star (:func:`star_key`, :func:`lamost_split_of`, :func:`split_other`), stable
  and independent of which other files are present;
* the ``other`` class: :func:`other_templates` (O/B/A/M stars, LAMOST galaxies/QSOs through
  :func:`drcnet.library.labels.other_label`), :func:`no_light_templates` (sky-only fibers), the
  sampling groups :func:`source_group` and their shares :data:`OTHER_SHARE`.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from drcnet.conventions import CLASSES, OTHER, SPLIT_NAMES
from drcnet.library.labels import other_label
from drcnet.library.template import Template
from drcnet.simulate.spectra import ab_magnitude

LAMOST_SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
"""Share of the real LAMOST stars in train / val / test (held out)."""
OTHER_SHARE: dict[str, float] = {
    "lamost:A": 0.35,
    "lamost:M": 0.15,
    "lamost:GALAXY": 0.15,
    "lamost:QSO": 0.05,
    "stelib": 0.15,
    "sky": 0.15,
}
"""Share of each source group among the ``other`` objects (renormalised over the groups present): real
LAMOST A stars (the commonest non-F/G/K stars on a LAMOST plate and the nearest to F0), M stars,
galaxies and QSOs, STELIB O/B/A/M stars (reddened by the forward model), and fibers with no object
light at all (sky only: an empty or misplaced fiber)."""


def star_key(t: Template) -> str:
    """Name of a LAMOST star (designation, else the file stem), so repeat visits share a split."""
    name = str(t.meta.get("designation") or "").strip()
    return re.sub(r"\s+", "", name).upper() if name else t.source_id


def check_split_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """``fractions`` as three finite shares >= 0 (train, val, test) with a positive finite sum.

    Raises
    ------
    ValueError
        Naming the value and what to give instead (NaN or infinite shares would put every star in one
        split without a word).
    """
    f = tuple(float(x) for x in fractions)
    if len(f) != 3 or not all(math.isfinite(x) and x >= 0 for x in f) or not 0 < sum(f) < float("inf"):
        raise ValueError(
            f"LAMOST split shares {tuple(fractions)}: give three finite shares >= 0 for train, val, test "
            "with a positive sum, e.g. 0.70,0.15,0.15"
        )
    return f[0], f[1], f[2]


def lamost_split_of(key: str, fractions: Sequence[float] = LAMOST_SPLIT_FRACTIONS, salt: str = "drcnet") -> int:
    """Split index (0 train, 1 val, 2 test) of a star from a hash of its name: stable and order-free."""
    h = int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:12], 16) / float(16**12)
    edges = np.cumsum(fractions) / np.sum(fractions)
    return int(np.searchsorted(edges, h, side="right"))


LIBRARY_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""Share of the library O/B/A/M stars in train / val / test."""


def renderable(t: Template) -> bool:
    """False (with a warning naming the spectrum) when the forward model cannot scale it: no r-band flux."""
    try:
        ab_magnitude(t.wave, t.flux)
    except ValueError as err:
        warnings.warn(f"{t.path}: skipped as an 'other' source ({err})", stacklevel=3)
        return False
    return True


FA_BOUNDARY_SUBCLASSES: tuple[str, ...] = ("A6", "A7", "A8", "A9")
"""LAMOST subclasses of the real A stars next to F0: the ``other`` objects a model most often calls F
(issue 22 item 3). A luminosity suffix (``A7V``, ``A7IV``) counts as the subclass."""


def at_fa_boundary(t: Template) -> bool:
    """A real LAMOST late-A star (:data:`FA_BOUNDARY_SUBCLASSES`), class ``other``."""
    return (
        t.cls == OTHER
        and t.library == "lamost"
        and t.meta.get("mk_class") == "A"
        and t.subclass[:2] in FA_BOUNDARY_SUBCLASSES
    )


def source_group(t: Template) -> str:
    """Sampling group of a template: its library for F/G/K; for ``other`` see :data:`OTHER_SHARE`."""
    if t.meta.get("no_light"):
        return "sky"
    if t.cls == OTHER and t.library == "lamost":
        return f"lamost:{t.meta.get('mk_class', '')}"
    return t.library


def no_light_templates(like: Template) -> list[Template]:
    """Three ``sky`` pseudo-templates (one per split) for fibers with no object light.

    The spectrum is ``like``'s (any template: it is rendered at :data:`~drcnet.simulate.dataset.NO_LIGHT_MAG`, so only the sky and
    the neighbours' light reach the stripe); class ``other``, subclass ``"SKY"``.
    """
    return [
        replace(
            like,
            cls=OTHER,
            subclass="SKY",
            lumclass="",
            library="sky",
            source_id=f"sky-{name}",
            teff=float("nan"),
            logg=float("nan"),
            feh=float("nan"),
            meta={"no_light": True, "mk_class": "SKY", "label_source": "sky"},
        )
        for name in SPLIT_NAMES
    ]


def other_templates(templates: Sequence[Template]) -> list[Template]:
    """The non-F/G/K templates of ``templates`` relabelled as class ``other`` (subclass kept).

    O/B/A/M stars and LAMOST galaxies/QSOs go through :func:`drcnet.library.labels.other_label` on their
    own (MK or LAMOST) labels; templates already of class ``other`` are kept; unknown labels and spectra
    without r-band flux are left out (the latter with a warning naming the file).
    """
    out = []
    for t in templates:
        if t.cls in CLASSES:
            continue
        o = t if t.cls == OTHER else other_label(t)
        if o is not None and not o.meta.get("no_light") and renderable(o):
            out.append(o)
    return out


def split_other(
    templates: Sequence[Template], all_test: bool, lamost_fractions: Sequence[float] = LAMOST_SPLIT_FRACTIONS
) -> np.ndarray:
    """Split index of every ``other`` template: all test with ``all_test``, else by a hash of the star.

    The rule (:func:`lamost_split_of`: LAMOST stars 70/15/15 by designation, or ``lamost_fractions``;
    library stars 8:1:1 by template id) serves both ``drcnet simulate --other`` and the survey
    population, so a star lands in the same split in both kinds of file.
    """
    if all_test:
        return np.full(len(templates), SPLIT_NAMES.index("test"), dtype=int)
    return np.array(
        [
            lamost_split_of(star_key(t), lamost_fractions)
            if t.library == "lamost"
            else lamost_split_of(t.template_id, LIBRARY_SPLIT_FRACTIONS)
            for t in templates
        ],
        dtype=int,
    )
