"""``drcnet simulate-population``: the robust model's training population as one dataset file.

Real LAMOST spectra plus the three libraries, on LAMOST's labels, split by star, rendered with the
domain-randomised forward model (:mod:`drcnet.simulate.population`, :mod:`drcnet.simulate.randomize`).
"""

from __future__ import annotations

from pathlib import Path

from drcnet.conventions import SPLIT_NAMES
from drcnet.simulate.population import LAMOST_SPLIT_FRACTIONS, prepare_population, split_counts, write_lamost_split
from drcnet.simulate.randomize import DomainRandomization
from drcnet.workflows.simulate_dataset import simulate_dataset


def simulate_population(
    out: str | Path,
    data_root: str | Path,
    counts: dict[str, int],
    seed: int = 0,
    snr_range: tuple[float, float] | None = None,
    randomize: bool = True,
    include: tuple[str, ...] = ("lamost", "pyhammer", "miles", "stelib"),
    workers: int | None = 1,
    lamost_splits: str | Path | None = None,
    progress: bool = True,
    other_share: float = 0.0,
    lamost_fractions: tuple[float, float, float] = LAMOST_SPLIT_FRACTIONS,
    spectral_labels: bool = True,
    boundary_weight: float = 1.0,
) -> tuple[Path, dict[str, dict[str, int]]]:
    """Render the survey population into ``out`` (HDF5, the schema of ``drcnet simulate``).

    Parameters
    ----------
    out
        Dataset file to write (atomically).
    data_root
        Reference-data root.
    counts
        Objects per split, e.g. ``{"train": 8000, "val": 1000}``.
    seed, snr_range, randomize, include
        See :func:`drcnet.simulate.population.prepare_population`.
    workers
        Rendering processes.
    other_share
        Share of objects of class ``other`` (:func:`drcnet.simulate.population.prepare_population`).
    lamost_fractions
        Train/val/test shares of the real LAMOST stars (default 0.70/0.15/0.15; ``(0.85, 0, 0.15)`` puts the
        validation stars into training and keeps the same test stars).
    spectral_labels
        Library stars on LAMOST's convention from their spectra (default) or by the parameter vote alone.
    boundary_weight
        How much more often the training split draws LAMOST's late-A stars
        (:func:`drcnet.simulate.population.sampling_weights`).
    lamost_splits
        If given, write ``train/``, ``val/`` and ``test/`` folders of links to the real LAMOST files of
        each split there (so a held-out part can be rendered with ``drcnet simulate --library``).

    Returns
    -------
    path, templates_per_split
        The file and ``{split: {"library:class": n}}``.
    """
    config, prepared = prepare_population(
        data_root,
        counts,
        seed=seed,
        snr_range=snr_range,
        randomize=randomize,
        include=include,
        other_share=other_share,
        lamost_fractions=lamost_fractions,
        spectral_labels=spectral_labels,
        boundary_weight=boundary_weight,
    )
    table = split_counts(prepared.templates, prepared.template_split)
    if lamost_splits is not None:
        for s, name in enumerate(SPLIT_NAMES):
            write_lamost_split(prepared.templates, prepared.template_split, s, Path(lamost_splits) / name)
    extra = {
        "population": {
            "counts": counts,
            "include": list(include),
            "randomize": randomize,
            "other_share": other_share,
            "lamost_fractions": list(lamost_fractions),
            "library_labels": "spectra" if spectral_labels else "parameters",
            "boundary_weight": boundary_weight,
            "randomization": DomainRandomization().model_dump(mode="json") if randomize else None,
        }
    }
    path = simulate_dataset(
        config,
        prepared.templates,
        out,
        data_root=data_root,
        workers=workers,
        progress=progress,
        prepared=prepared,
        extra_config=extra,
        label_convention="lamost",
    )
    return path, table
