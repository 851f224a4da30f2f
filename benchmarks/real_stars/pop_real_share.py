"""A survey population with a chosen share of real LAMOST stars among the F and G objects (issue 22 experiment).

``drcnet simulate-population`` draws F and G objects 0.9 and K objects 0.75 from real LAMOST spectra and
the rest from the libraries (:data:`drcnet.simulate.population.SOURCE_SHARE`, since issue 22; 0.65 and
0.35 before); this script renders the same population with other real shares (the libraries keep their
proportions among themselves; K keeps the default unless ``--k-share`` is given), to measure
how the real share moves each class.

usage::

    DRCNET_DATA=../shared/data python benchmarks/real_stars/pop_real_share.py pop90.h5 --share 0.9 \
        [--k-share 0.9] [--n-train 7000] [--n-val 1000] [--other 0.2] [--seed 5] [--lamost-splits stars]
"""

from __future__ import annotations

import argparse

from drcnet.paths import data_root
from drcnet.simulate import population
from drcnet.workflows.simulate_population import simulate_population


def set_real_share(share: float, classes: tuple[str, ...] = ("F", "G")) -> None:
    """Give real LAMOST stars ``share`` of the objects of ``classes``; the libraries split the rest as before."""
    for cls in classes:
        libs = {k: v for k, v in population.SOURCE_SHARE[cls].items() if k != "lamost"}
        try:
            population.SOURCE_SHARE[cls] = population.real_share(share, libs)
        except ValueError as err:
            raise SystemExit(str(err)) from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--share", type=float, default=0.9, help="real LAMOST share of the F and G objects")
    ap.add_argument(
        "--k-share", type=float, default=None, help="real LAMOST share of the K objects (default: unchanged)"
    )
    ap.add_argument("--n-train", type=int, default=7000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--other", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lamost-splits", default=None, help="write the real stars of each split here")
    a = ap.parse_args()
    set_real_share(a.share)
    if a.k_share is not None:
        set_real_share(a.k_share, ("K",))
    path, table = simulate_population(
        a.out,
        data_root(),
        {"train": a.n_train, "val": a.n_val, "test": 0},
        seed=a.seed,
        workers=a.workers,
        other_share=a.other,
        lamost_splits=a.lamost_splits,
        progress=False,
    )
    print(path, table)


if __name__ == "__main__":
    main()
