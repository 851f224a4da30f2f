"""CLI command for whole nights on a Dask cluster: ``drcnet night classify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from drcnet.cli.common import (
    LazyConsole,
    add_command,
    friendly_errors,
    is_interactive,
    run_inputs,
)
from drcnet.outputs import Output, check_outputs

console = LazyConsole()


@friendly_errors
def classify_cmd(
    root: Annotated[
        Path, typer.Argument(help="night root: exposure folders (raw frames + fiber maps) anywhere below it")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="merged catalogue, .parquet (+ .fits and .manifest.json beside it)")
    ],
    run_dir: Annotated[
        Path | None, typer.Argument(help="training run folder (default: the shipped default model)")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help="address of a running Dask scheduler (tcp://host:8786); default: a LocalCluster here"
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="LocalCluster workers (default: one per core)")
    ] = None,
    threads: Annotated[
        bool,
        typer.Option(
            "--threads/--processes", help="LocalCluster workers as threads of this process instead of processes"
        ),
    ] = False,
    arm_threads: Annotated[
        int, typer.Option("--arm-threads", min=1, max=2, help="threads per task for the two arms")
    ] = 1,
    force: Annotated[bool, typer.Option("--force", help="redo every task, even those already done")] = False,
    trust_mtime: Annotated[
        bool,
        typer.Option(
            "--trust-mtime", help="skip finished tasks whose inputs' size and mtime are unchanged, without hashing them"
        ),
    ] = False,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", help="reference data folder, for the arc line lists")
    ] = None,
    catalogue: Annotated[
        Path | None,
        typer.Option(
            "--catalogue",
            help="LAMOST LRS catalogue (CSV or FITS): adds its obsid, designation, class, subclass, S/N_r and LASP parameters (lamost_* columns) and the accuracy against it",
        ),
    ] = None,
    non_fgk: Annotated[
        str,
        typer.Option(
            "--non-fgk", help="with --catalogue: objects that are not F/G/K stars count as 'other' or 'drop' (no class)"
        ),
    ] = "other",
    catalogue_ignore_lmjd: Annotated[
        bool, typer.Option("--catalogue-ignore-lmjd", help="match on planid, spid, fiberid alone")
    ] = False,
) -> None:
    """Classify every exposure under ROOT on a Dask cluster: one catalogue, a manifest, resumable.

    Exit status: 0 when every task finished; 3 when any (exposure, spectrograph) failed (the others are still merged into the catalogue, the manifest names the failures); 2 for a usage error.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from drcnet.instrument.exposure import exposure_input_files
    from drcnet.workflows.night import (
        EXIT_TASKS_FAILED,
        classify_night,
        manifest_path_for,
        summary_line,
        work_dir_for,
    )

    inputs = [
        f
        for d in ([root] + [p for p in root.rglob("*") if p.is_dir()] if root.is_dir() else [root])
        for f in exposure_input_files(d)
    ]
    check_outputs(
        [
            Output(out),
            Output(out.with_suffix(".fits"), "--out (.fits beside it)"),
            Output(manifest_path_for(out), "--out (.manifest.json beside it)"),
            Output(work_dir_for(out), "--out (.work folder beside it)", "folder"),
        ],
        files=inputs + run_inputs(run_dir) + ([catalogue] if catalogue is not None else []),
        trees=[root],
    )  # before any work

    progress = Progress(
        TextColumn("night"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fibers]} fibers"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console.real(),
        disable=not is_interactive(),
    )
    state: dict[str, Any] = {"task": None, "fibers": 0}

    def on_start(n: int) -> None:
        state["task"] = progress.add_task("night", total=n, fibers=0)

    def on_task(rec: dict[str, Any]) -> None:
        state["fibers"] += int(rec.get("n_fibers") or 0)
        progress.update(state["task"], advance=1, fibers=state["fibers"])
        for w in rec.get("warnings") or ():  # collected on the worker, per file and arm; shown every run
            progress.console.print(f"[yellow]warning:[/] {rec['id']}: {w}")
        if rec["status"] not in ("ok", "skipped"):
            progress.console.print(f"[yellow]failed:[/] {rec['id']}: {rec['error']}")

    matcher = None
    if catalogue is not None:  # read and checked before any work
        from drcnet.workflows.crossmatch import CatalogueMatcher

        matcher = CatalogueMatcher(catalogue, non_fgk, catalogue_ignore_lmjd)
    with progress:
        res = classify_night(
            root,
            out,
            run_dir,
            scheduler=scheduler,
            workers=workers,
            processes=not threads,
            arm_threads=arm_threads,
            force=force,
            trust_mtime=trust_mtime,
            data_root=data_root,
            on_start=on_start,
            on_task=on_task,
        )
    console.print(f"night: {summary_line(res.summary)}")
    console.print(f"wrote {res.catalogue}, {res.fits} and {res.manifest}")
    if matcher is not None:
        import numpy as np

        from drcnet.workflows.crossmatch import annotate_night

        table = annotate_night(res.catalogue, res.records, matcher)
        for line in matcher.report_lines():
            console.print(line)
        ok = [v for v in table["lamost_correct"].to_pylist() if v is not None]
        if ok:
            console.print(
                f"accuracy against the catalogue: {np.mean(ok):.3f} ({len(ok)} fibers with a catalogue class)"
            )
    if res.failed:
        console.print(
            f"[yellow]warning:[/] {len(res.failed)} task(s) failed: "
            f"{', '.join(r['id'] for r in res.failed)}; see {res.manifest}; exit status {EXIT_TASKS_FAILED}"
        )
        raise typer.Exit(code=EXIT_TASKS_FAILED)


def register(app: typer.Typer) -> None:
    """Add the ``night`` group (``classify``) to ``app``."""
    summary = "Whole nights: many exposures on a Dask cluster, one merged catalogue, resumable."
    night_app = typer.Typer(help=summary, no_args_is_help=True, rich_markup_mode=None)
    add_command(night_app, "classify", classify_cmd)
    app.add_typer(night_app, name="night", short_help=summary)
