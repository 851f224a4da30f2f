"""CLI commands for data: ``simulate`` and ``plot-sample``."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import typer

from drcnet.cli.common import (
    LazyConsole,
    add_command,
    friendly_errors,
    is_interactive,
    load_fgk_templates,
    resolve_libraries,
)
from drcnet.outputs import Output, check_outputs

console = LazyConsole()


@friendly_errors
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", help="output HDF5 file")],
    library: Annotated[
        list[Path] | None,
        typer.Option(
            "--library", help="library folder or file (repeatable); default: $DRCNET_DATA/spectral_libraries/pyhammer"
        ),
    ] = None,
    preset: Annotated[str, typer.Option(help="paper (Table 1, 7989 objects), small (1/10) or tiny (112)")] = "paper",
    n: Annotated[
        int | None,
        typer.Option("--n", help="number of objects with S/N_r spread over --snr-min..--snr-max (instead of a preset)"),
    ] = None,
    snr_min: Annotated[float | None, typer.Option("--snr-min")] = None,
    snr_max: Annotated[float | None, typer.Option("--snr-max")] = None,
    all_test: Annotated[bool, typer.Option("--all-test", help="with --n: put every object in the test split")] = False,
    other: Annotated[
        float,
        typer.Option(
            "--other",
            min=0.0,
            max=1.0,
            help="share of objects of class 'other' (label 3): the libraries' O/B/A/M stars, LAMOST galaxies/QSOs and sky-only fibers, subclass kept; 1: only those (e.g. to measure rejection); 0: F/G/K only",
        ),
    ] = 0.0,
    sky_fibers: Annotated[
        bool,
        typer.Option(
            "--sky-fibers/--no-sky-fibers", help="with --other: 15 % of the other objects are sky-only fibers"
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same data")] = 0,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: all cores)")] = None,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", help="reference data folder (default $DRCNET_DATA)")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out file")] = False,
) -> None:
    """Render a dataset of LAMOST stripes and 1D spectra from real stellar templates (and, with --other, non-F/G/K sources)."""
    from drcnet.library import summarize
    from drcnet.simulate.dataset import SimulationConfig
    from drcnet.workflows.simulate_dataset import simulate_dataset

    if out.is_dir():
        raise IsADirectoryError(f"{out}: --out is a folder; give the dataset file to write (.h5)")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it, or choose another --out")
    libs = resolve_libraries(library)
    check_outputs([Output(out)], files=[p for p in libs if not p.is_dir()], folders=[p for p in libs if p.is_dir()])
    config = SimulationConfig(
        libraries=[str(p) for p in libs],
        preset=None if n else preset,
        n=n,
        snr_min=snr_min,
        snr_max=snr_max,
        all_test=all_test,
        seed=seed,
        other=other,
        sky_fibers=sky_fibers,
    )
    t0 = time.perf_counter()
    result = load_fgk_templates(libs, console, all_classes=other > 0)
    console.print(summarize(result))
    path = simulate_dataset(
        config, result.templates, out, data_root=data_root, workers=workers, progress=is_interactive()
    )
    _print_summary(path, time.perf_counter() - t0)


def _print_summary(path: Path, seconds: float) -> None:
    import h5py
    import numpy as np

    from drcnet.conventions import CLASSES, OTHER
    from drcnet.data.schema import SNR_BIN_NAMES, SPLIT_NAMES

    with h5py.File(path, "r") as h:
        split, b, label = h["split"][:], h["snr_bin"][:], h["label"][:]
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {split.size} objects) in {seconds:.1f} s")
    names = CLASSES + ((OTHER,) if np.any(label == len(CLASSES)) else ())
    header = "split      " + " ".join(f"{n:>7}" for n in SNR_BIN_NAMES) + "    " + " ".join(f"{c:>5}" for c in names)
    console.print(header)
    for s, name in enumerate(SPLIT_NAMES):
        sel = split == s
        bins = " ".join(f"{int(np.sum(sel & (b == k))):>7}" for k in range(4))
        cls = " ".join(f"{int(np.sum(sel & (label == c))):>5}" for c in range(len(names)))
        console.print(f"{name:<10} {bins}    {cls}")


@friendly_errors
def simulate_population_cmd(
    out: Annotated[Path, typer.Option("--out", help="output HDF5 file")],
    n_train: Annotated[int, typer.Option("--n-train", min=0, help="training objects")] = 8000,
    n_val: Annotated[int, typer.Option("--n-val", min=0, help="validation objects")] = 1000,
    n_test: Annotated[int, typer.Option("--n-test", min=0, help="test objects (stars of the held-out part)")] = 0,
    snr_min: Annotated[
        float | None, typer.Option("--snr-min", help="default: the randomisation's range (2-150)")
    ] = None,
    snr_max: Annotated[float | None, typer.Option("--snr-max")] = None,
    randomize: Annotated[
        bool,
        typer.Option(
            "--randomize/--no-randomize",
            help="domain randomisation (off: the nominal instrument, for evaluation files)",
        ),
    ] = True,
    include: Annotated[
        str, typer.Option(help="comma-separated sources: lamost, pyhammer, miles, stelib")
    ] = "lamost,pyhammer,miles,stelib",
    other: Annotated[
        float,
        typer.Option(
            "--other",
            min=0.0,
            max=0.9,
            help="share of objects of class 'other' (A/M/O/B stars, galaxies, QSOs, sky-only fibers; label 3); 0: F/G/K only",
        ),
    ] = 0.0,
    lamost_splits: Annotated[
        Path | None,
        typer.Option(
            "--lamost-splits",
            help="also write train/val/test folders of links to the real LAMOST files of each split here",
        ),
    ] = None,
    lamost_shares: Annotated[
        str,
        typer.Option(
            "--lamost-shares",
            help="train,val,test shares of the real LAMOST stars (by a hash of the star's name); 0.85,0,0.15 moves the validation stars into training and keeps the same test stars",
        ),
    ] = "0.70,0.15,0.15",
    library_labels: Annotated[
        str,
        typer.Option(
            "--library-labels",
            help="how library stars get LAMOST's labels: 'spectra' (a CNN trained on the real stars of the training split; ambiguous stars left out) or 'parameters' (the Teff/logg/[Fe/H] vote alone, as before issue 22)",
        ),
    ] = "spectra",
    boundary_weight: Annotated[
        float,
        typer.Option(
            "--boundary-weight",
            help="training split only: draw LAMOST's late-A stars (A6-A9, class 'other', next to F0) this many times as often as the other real A stars (the A share stays the same)",
        ),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same data")] = 0,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: all cores)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out file")] = False,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", help="reference data folder (default $DRCNET_DATA)")
    ] = None,
) -> None:
    """Render the survey population (real LAMOST + libraries, LAMOST labels, domain-randomised) for the robust model."""
    from drcnet.paths import data_root as find_root
    from drcnet.workflows.simulate_population import simulate_population

    # the options first: a wrong value is reported before any file or data folder is looked at
    if (snr_min is None) != (snr_max is None):
        raise ValueError("give both --snr-min and --snr-max, or neither")
    if not (math.isfinite(boundary_weight) and boundary_weight > 0):
        raise ValueError(
            f"--boundary-weight {boundary_weight}: give a finite number > 0 (1 draws every A star equally)"
        )
    if library_labels not in ("spectra", "parameters"):
        raise ValueError(f"--library-labels {library_labels!r}: give 'spectra' or 'parameters'")
    counts = {k: v for k, v in (("train", n_train), ("val", n_val), ("test", n_test)) if v > 0}
    if not counts:
        raise ValueError("nothing to render: --n-train, --n-val and --n-test are all 0")
    from drcnet.simulate.sources import check_split_fractions

    try:
        fractions = check_split_fractions([float(x) for x in lamost_shares.split(",")])
    except ValueError:
        raise ValueError(
            f"--lamost-shares {lamost_shares!r}: give three finite shares >= 0 for train,val,test with a "
            "positive sum, e.g. 0.70,0.15,0.15"
        ) from None
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it, or choose another --out")
    check_outputs(
        [Output(out), Output(lamost_splits, "--lamost-splits", "folder") if lamost_splits else None],
        folders=[data_root or find_root()],
    )
    root = data_root or find_root()
    t0 = time.perf_counter()
    path, table = simulate_population(
        out,
        root,
        counts,
        seed=seed,
        randomize=randomize,
        snr_range=(snr_min, snr_max) if snr_min is not None else None,
        include=tuple(x.strip() for x in include.split(",") if x.strip()),
        workers=workers,
        lamost_splits=lamost_splits,
        progress=is_interactive(),
        other_share=other,
        lamost_fractions=fractions,
        spectral_labels=library_labels == "spectra",
        boundary_weight=boundary_weight,
    )
    for name, by in table.items():
        console.print(f"templates {name}: " + ", ".join(f"{k} {v}" for k, v in by.items()))
    _print_summary(path, time.perf_counter() - t0)


@friendly_errors
def plot_sample_cmd(
    file: Annotated[Path, typer.Argument(help="dataset file (HDF5)")],
    out: Annotated[Path, typer.Option("--out", help="output PNG")],
    index: Annotated[int, typer.Option("--index", help="object index in the file")] = 0,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", help="reference data folder, to overplot the source template")
    ] = None,
) -> None:
    """Plot one object's blue and red stripes, their 1D extractions and the source template."""
    from drcnet.plots.sample_plot import plot_sample

    check_outputs([Output(out)], files=[file])
    plot_sample(file, index, out, data_root=data_root)
    console.print(f"wrote {out}")


@friendly_errors
def split_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="labelled dataset file(s) of one schema, merged in this order")],
    out: Annotated[Path, typer.Option("--out", help="output dataset file (HDF5)")],
    table1: Annotated[
        bool,
        typer.Option(
            "--table1", help="exactly Table 1's counts (F/G/K in the paper's ratio), or an error saying what is missing"
        ),
    ] = False,
) -> None:
    """The paper's split on any labelled dataset: S/N_r > 30 split 8:1:1 train/val/test by star, the rest test."""
    from drcnet.workflows.split_dataset import split_datasets

    check_outputs([Output(out)], files=list(inputs))  # before any work: never write over an input
    res = split_datasets(inputs, out, table1=table1)
    console.print(f"wrote {res.out}: {sum(sum(v.values()) for v in res.counts.values())} of {res.n_in} objects")
    for name, bins in res.counts.items():
        classes = ", ".join(f"{c} {k}" for c, k in res.class_counts[name].items() if k)
        console.print(f"  {name:5s} " + ", ".join(f"S/N_r {b}: {k}" for b, k in bins.items() if k) + f" ({classes})")
    for reason, k in res.left_out.items():
        if k:
            console.print(f"  left out: {k} {reason}")
    empty = [name for name in ("train", "val", "test") if not sum(res.counts[name].values())]
    if empty:
        console.print(
            f"[yellow]warning:[/] no object in {', '.join(empty)}: too few stars (designations) above "
            "S/N_r 30 for 8:1:1 by star; `drcnet train` needs train and val - merge more nights"
        )


def register(app: typer.Typer) -> None:
    """Add ``simulate``, ``simulate-population``, ``plot-sample`` and ``split`` to ``app``."""
    add_command(app, "simulate", simulate_cmd)
    add_command(app, "simulate-population", simulate_population_cmd)
    add_command(app, "plot-sample", plot_sample_cmd)
    add_command(app, "split", split_cmd)
