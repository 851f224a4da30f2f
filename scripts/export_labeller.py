"""Fit the LAMOST-convention spectral labeller and ship it in ``src/drcnet/library/data/lamost_labeller.safetensors``.

The labeller is :func:`drcnet.simulate.population.fit_labeller` (a :class:`~drcnet.library.spectral_labels.CnnLabeller`
on the training-split real LAMOST stars of ``$DRCNET_DATA/lamost_real``, seed 0; ~1 minute on one core). The
file's metadata records the subclasses, the labeller's settings, the sha256 of ``lamost_real/index.csv``, the
number of training spectra, the seed and the package version and commit (no machine paths).

Usage::

    DRCNET_DATA=/path/to/data .venv/bin/python scripts/export_labeller.py [--out FILE] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import warnings
from pathlib import Path

from drcnet import __version__
from drcnet.library import load_templates
from drcnet.library.spectral_labels import SHIPPED_LABELLER, save_labeller
from drcnet.paths import data_root
from drcnet.provenance import git_commit
from drcnet.simulate.population import LAMOST_FOLDER, LAMOST_SPLIT_FRACTIONS, fit_labeller, labeller_training_set


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED_LABELLER)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    folder = Path(data_root()) / LAMOST_FOLDER
    index = folder / "index.csv"
    if not index.is_file():
        print(f"error: {index} not found; set DRCNET_DATA to the reference data folder", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        templates = load_templates([folder], classes=None).templates
    train = labeller_training_set(templates, LAMOST_SPLIT_FRACTIONS)
    labeller = fit_labeller(templates, LAMOST_SPLIT_FRACTIONS, seed=args.seed)
    if labeller is None:
        print(f"error: only {len(train)} training-split real stars in {folder}; need >= 50", file=sys.stderr)
        return 2
    extra = {
        "fitted_by": "drcnet.simulate.population.fit_labeller",
        "data": f"{LAMOST_FOLDER}/index.csv",
        "index_sha256": hashlib.sha256(index.read_bytes()).hexdigest(),
        "n_training_spectra": len(train),
        "lamost_split_fractions": list(LAMOST_SPLIT_FRACTIONS),
        "seed": args.seed,
        "drcnet_version": __version__,
        "git_commit": git_commit(),
    }
    out = save_labeller(labeller, args.out, extra)
    print(
        f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB): {len(train)} training spectra, "
        f"{len(labeller.subclasses)} subclasses"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
