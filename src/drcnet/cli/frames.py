"""CLI commands for raw exposures: ``drcnet frames simulate | reduce | classify``."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from drcnet.cli.common import (
    LazyConsole,
    add_command,
    friendly_errors,
    load_fgk_templates,
    resolve_libraries,
    run_inputs,
)
from drcnet.outputs import Output
from drcnet.outputs import check_outputs as check_paths

console = LazyConsole()


@friendly_errors
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", help="exposure folder to write")],
    library: Annotated[
        list[Path] | None,
        typer.Option(
            "--library", help="library folder or file (repeatable); default: $DRCNET_DATA/spectral_libraries/pyhammer"
        ),
    ] = None,
    spectrographs: Annotated[
        int, typer.Option("--spectrographs", min=1, max=16, help="simulate spectrographs 1..N")
    ] = 1,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same frames")] = 0,
    planid: Annotated[str, typer.Option(help="plan id in the file names (default SIM<seed>)")] = "",
    gzip: Annotated[bool, typer.Option("--gzip/--no-gzip", help="write .fit.gz like the archive (slower)")] = False,
    cosmics: Annotated[bool, typer.Option("--cosmics/--no-cosmics", help="add cosmic rays")] = True,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: all cores)")] = None,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", help="reference data folder (default $DRCNET_DATA)")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an exposure already in --out")] = False,
    exposures: Annotated[
        int, typer.Option("--exposures", min=1, help="several plates: exposure k in OUT/<planid>/ with seed + k")
    ] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help="Dask scheduler address: one task per (exposure, spectrograph) on its workers"
        ),
    ] = None,
    other: Annotated[
        float,
        typer.Option(
            "--other",
            min=0.0,
            max=1.0,
            help="share of program fibers holding 'other' objects (the libraries' O/B/A/M stars, galaxies, QSOs; 15 % of them sky-only fibers); truth class 'other'. 0 (default) keeps the F/G/K-only plate; ~0.15 is survey-like",
        ),
    ] = 0.0,
) -> None:
    """Simulate one plate's raw exposure set: bias x5, flat, arc and science per arm, fiber maps, truth."""
    from drcnet.simulate.exposure import ExposureConfig, simulate_exposure
    from drcnet.simulate.exposure.safety import refuse_existing_exposure

    refuse_existing_exposure(out, overwrite)
    libs = resolve_libraries(library)
    check_paths(
        [Output(out, kind="folder")], files=[p for p in libs if not p.is_dir()], folders=[p for p in libs if p.is_dir()]
    )
    config = ExposureConfig(
        libraries=[str(p) for p in libs],
        spectrographs=spectrographs,
        seed=seed,
        planid=planid,
        gzip=gzip,
        cosmics=cosmics,
        other=other,
    )
    t0 = time.perf_counter()
    result = load_fgk_templates(libs, console, all_classes=other > 0)
    t1 = time.perf_counter()
    if exposures > 1 or scheduler:
        from drcnet.simulate.exposure import simulate_night

        client = None
        if scheduler:
            from distributed import Client

            client = Client(scheduler, timeout="60s")
        try:
            sims = simulate_night(
                config, result.templates, out, exposures, data_root=data_root, workers=workers, client=client
            )
        finally:
            if client is not None:
                client.close()
        console.print(
            f"wrote {len(sims)} exposures x {spectrographs} spectrograph(s) to {out}/"
            f"{{{','.join(s.config.planid for s in sims)}}} in {time.perf_counter() - t1:.1f} s "
            f"(templates loaded in {t1 - t0:.1f} s)"
        )
        return
    sim = simulate_exposure(config, result.templates, out, data_root=data_root, workers=workers)
    n_files = sum(len(v) for sp in sim.spectrographs for t in sp.truth.values() for v in t.files.values())
    console.print(
        f"wrote {n_files} raw frames, {len(sim.spectrographs)} fiber map(s) and truth file(s) to {out} "
        f"in {sim.seconds:.1f} s (templates loaded in {t1 - t0:.1f} s)"
    )


@friendly_errors
def reduce_cmd(
    exposure: Annotated[Path, typer.Argument(help="exposure folder (raw frames + fiber maps)")],
    out: Annotated[Path, typer.Option("--out", help="output dataset file (HDF5, the schema of `drcnet simulate`)")],
    spid: Annotated[list[int] | None, typer.Option("--spid", help="only these spectrographs (repeatable)")] = None,
    run: Annotated[
        int | None, typer.Option("--run", help="run number of the science exposure when there are several")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="arms reduced in parallel")] = 2,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", help="reference data folder, for the arc line lists")
    ] = None,
    catalogue: Annotated[
        Path | None,
        typer.Option(
            "--catalogue",
            help="LAMOST LRS catalogue (CSV or FITS) to take labels, subclass, S/N_r, LASP parameters and designations from",
        ),
    ] = None,
    non_fgk: Annotated[
        str,
        typer.Option(
            "--non-fgk",
            help="with --catalogue: objects that are not F/G/K stars get label 'other' (3) or 'drop' (label -1)",
        ),
    ] = "other",
    catalogue_ignore_lmjd: Annotated[
        bool, typer.Option("--catalogue-ignore-lmjd", help="match on planid, spid, fiberid alone")
    ] = False,
) -> None:
    """Reduce raw frames to stripes, boxcar/optimal 1D spectra, S/N_r and flags (a dataset file)."""
    from drcnet.instrument.errors import FrameWarning
    from drcnet.instrument.exposure import exposure_input_files
    from drcnet.notices import collect
    from drcnet.reduce.arm import ReduceConfig
    from drcnet.workflows.exposure_check import check_exposure
    from drcnet.workflows.reduce_exposure import iter_reductions, release_memory
    from drcnet.workflows.reduced_dataset import ReducedDatasetWriter

    check_paths(
        [Output(out)],
        files=[*exposure_input_files(exposure), *([catalogue] if catalogue is not None else [])],
        trees=[exposure],
    )  # before any work
    config = ReduceConfig(threads=threads)
    matcher = None
    if catalogue is not None:
        from drcnet.workflows.crossmatch import CatalogueMatcher

        matcher = CatalogueMatcher(catalogue, non_fgk, catalogue_ignore_lmjd)
    t0 = time.perf_counter()
    n_fibers = 0
    # every warning of the checks and of both arms (collected per arm in its thread, passed on here as
    # "spNN arm: file: ..."), printed after each spectrograph, every run
    with collect(FrameWarning) as caught:
        checked = check_exposure(exposure, spids=spid, run=run)  # every file of every spectrograph, before any work
        # spectrograph by spectrograph: reduce, write its rows, report, drop it (memory does not grow with them)
        with ReducedDatasetWriter(out, checked, config, exposure, matcher) as writer:
            for sr in iter_reductions(checked, config, data_root=data_root):
                writer.write(sr)
                for w in caught:  # the warnings so far (file checks, this spectrograph's reduction)
                    console.print(f"[yellow]warning:[/] {w}")
                caught.clear()
                _print_arm_summaries(sr)
                n_fibers += len(sr.fibermap)
                del sr
                release_memory()
    console.print(f"wrote {out} ({n_fibers} fibers) in {time.perf_counter() - t0:.1f} s")
    for line in matcher.report_lines() if matcher is not None else []:
        console.print(line)


def _print_arm_summaries(sr: Any) -> None:
    """One line per arm of a reduced spectrograph: trace and arc rms, lost traces, flagged fibers."""
    for arm, a in sr.arms.items():
        s = a.summary()
        arc = s["wavecal"]["median_rms_px"]
        trace = s["trace"]["median_rms_px"]
        console.print(
            f"sp{sr.spid:02d} {arm}: traces rms {'none' if trace is None else f'{trace:.4f} px'}, "
            f"{s['trace']['n_lost']} lost; arc rms {'no lines' if arc is None else f'{arc:.4f} px'}; "
            f"{s['n_saturated']} saturated, {s['n_bad_pixels']} with NaN pixels, "
            f"{s['n_bad_calib']} bad calibration, {s['n_cosmic']} cosmic-ray"
            + (f"; IMPLAUSIBLE: {'; '.join(a.problems)}" if a.problems else "")
        )


@friendly_errors
def classify_cmd(
    run_dir: Annotated[
        Path | None,
        typer.Argument(
            help="training run folder (`drcnet train`) or a shipped model's "
            "name (`drcnet models`); default: the shipped model"
        ),
    ] = None,
    exposure: Annotated[Path, typer.Option("--exposure", help="exposure folder (raw frames + fiber maps)")] = ...,  # type: ignore[assignment]
    out: Annotated[Path, typer.Option("--out", help="catalogue file: .csv, .parquet or .fits")] = ...,  # type: ignore[assignment]
    qa: Annotated[
        Path | None, typer.Option("--qa", help="QA page folder (default: <out stem>_qa next to the catalogue)")
    ] = None,
    no_qa: Annotated[bool, typer.Option("--no-qa", help="skip the QA page")] = False,
    dataset: Annotated[Path | None, typer.Option("--dataset", help="also write the reduced dataset file here")] = None,
    spid: Annotated[list[int] | None, typer.Option("--spid", help="only these spectrographs (repeatable)")] = None,
    run: Annotated[
        int | None, typer.Option("--run", help="run number of the science exposure when there are several")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", help="reference data folder, for the arc line lists")
    ] = None,
) -> None:
    """Classify every object fiber of a raw exposure: catalogue (pred, prob_F/G/K, S/N_r, flags) and QA page."""
    classify_and_print(
        run_dir, exposure, out, qa=qa, no_qa=no_qa, dataset=dataset, spid=spid, run=run, data_root=data_root
    )


def classify_and_print(
    run_dir: Path | str | None,
    exposure: Path,
    out: Path,
    qa: Path | None = None,
    no_qa: bool = False,
    dataset: Path | None = None,
    spid: list[int] | None = None,
    run: int | None = None,
    data_root: Path | None = None,
    engine: str = "torch",
) -> None:
    """Check the outputs, run :func:`drcnet.workflows.classify_exposure.classify_exposure`, print what it did.

    Shared by ``drcnet frames classify`` and ``drcnet predict --exposure`` (a plain function, not a command).
    """
    from drcnet.instrument.errors import FrameWarning
    from drcnet.instrument.exposure import exposure_input_files
    from drcnet.models.run_folder import resolve_run
    from drcnet.workflows.classify_exposure import check_outputs, classify_exposure

    qa_dir = None if no_qa else (qa or out.with_name(out.name.split(".")[0] + "_qa"))
    run_dir = resolve_run(run_dir)  # a run folder, a shipped model's name, an .onnx file, or the default model
    check_outputs(
        out, qa_dir, dataset, files=exposure_input_files(exposure) + run_inputs(run_dir), trees=[exposure]
    )  # before any work
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FrameWarning)  # printed below from the result
        res = classify_exposure(
            run_dir,
            exposure,
            out,
            dataset_out=dataset,
            qa_dir=qa_dir,
            spids=spid,
            run=run,
            data_root=data_root,
            engine=engine,
        )
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    t = res.timings
    console.print(
        f"wrote {res.catalogue} ({len(res.table)} object fibers): reduce {t['reduce']:.1f} s, "
        f"classify {t['classify']:.1f} s" + (f", QA {t['qa']:.1f} s -> {res.qa}" if res.qa else "")
    )
    if res.n_no_class:
        console.print(
            f"no class for {sum(res.n_no_class.values())} object fiber(s) ("
            + ", ".join(f"{k} {v}" for k, v in res.n_no_class.items())
            + "): column no_class; left out of the accuracy"
        )
    if res.accuracy is not None:
        conv = {"lamost": "LAMOST's convention (TRUE_CLASS_LAMOST)", "mk": "MK types (TRUE_CLASS)"}.get(
            res.label_convention, "mixed conventions (some fiber maps lack TRUE_CLASS_LAMOST)"
        )
        console.print(f"accuracy against the fiber map's truth on {conv}, true F/G/K stars: {res.accuracy:.3f}")
    if res.rejection is not None:
        console.print(f"rejection: {res.rejection:.3f} of the true 'other' objects called other")


def register(app: typer.Typer) -> None:
    """Add the ``frames`` group (``simulate``, ``reduce``, ``classify``) to ``app``."""
    summary = "Raw LAMOST exposures: simulate frames, reduce them to stripes, classify a whole exposure."
    frames_app = typer.Typer(help=summary, no_args_is_help=True, rich_markup_mode=None)
    add_command(frames_app, "simulate", simulate_cmd)
    add_command(frames_app, "reduce", reduce_cmd)
    add_command(frames_app, "classify", classify_cmd)
    app.add_typer(frames_app, name="frames", short_help=summary)
