"""Both labels for every simulated object: its own (MK for library stars) and LAMOST's convention.

``drcnet simulate`` and ``drcnet frames simulate`` keep each template's own label (``label``, ``subclass``,
``TRUE_CLASS``: the MK type of a library star, LAMOST's label of a real LAMOST star), which the paper
reproduction is scored against, and record beside it the label LAMOST's pipeline would give the star
(:func:`drcnet.library.labels.lamost_convention_labels`): the labeller shipped with drcnet
(:func:`drcnet.library.spectral_labels.load_shipped_labeller`) read on the library spectrum, trusted inside
the real stars' region of (Teff, log g, [Fe/H]) (:meth:`~drcnet.library.labels.LamostLabelMap.from_index`
on ``<data>/lamost_real/index.csv``); ambiguous stars (class margin < 0.3) get no LAMOST class. Without that
index the region is unknown and the labeller is trusted wherever its margin is >= 0.3.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from drcnet.library.labels import LamostLabelMap, lamost_convention_labels, with_convention_labels
from drcnet.library.template import Template

#: Where the parameter vote's reference stars are listed, under the data root.
LAMOST_INDEX = "lamost_real/index.csv"


def region_map(data_root: str | Path | None = None) -> LamostLabelMap | None:
    """The real stars' region (:meth:`LamostLabelMap.from_index`), or None when the data root has no index."""
    from drcnet.paths import data_root as find_root

    try:
        root = find_root(data_root)
    except (FileNotFoundError, ValueError, OSError):
        return None
    index = Path(root) / LAMOST_INDEX
    if not index.is_file():
        return None
    try:
        return LamostLabelMap.from_index(index)
    except ValueError as err:
        warnings.warn(
            f"{err}; the real stars' region is unknown: the labeller decides wherever its margin is >= 0.3",
            stacklevel=2,
        )
        return None


def attach_lamost_labels(templates: Sequence[Template], data_root: str | Path | None = None) -> list[Template]:
    """The templates with their LAMOST-convention label in ``meta`` (:data:`~drcnet.library.labels.CONVENTION_META`).

    Their own ``cls``/``subclass`` are unchanged. Uses the shipped labeller and the region of
    ``<data_root>/lamost_real/index.csv`` (default ``$DRCNET_DATA``; see the module docstring without it).
    """
    from drcnet.library.spectral_labels import load_shipped_labeller

    templates = list(templates)
    if not templates:
        return templates
    labels = lamost_convention_labels(templates, load_shipped_labeller(), region_map(data_root))
    return with_convention_labels(templates, labels)
