"""CLI commands for models: train, evaluate, predict, calibrate, report, models.

:func:`register` adds them to the app that :mod:`drcnet.cli` builds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from drcnet.cli.common import (
    add_command,
    err_console,
    friendly_errors,
    run_inputs,
)
from drcnet.cli.train import train_cmd
from drcnet.outputs import Output, check_outputs

DEFAULT_RUN_HELP = "Run folder from `drcnet train` (default: the shipped default model, see `drcnet models`)."


def catalogue_summary(c: dict | None) -> str:
    """One line of the catalogue metrics of ``metrics.json`` (all S/N bins together); empty when absent."""
    if not c:
        return ""

    def f(x: float | None, nd: int = 3) -> str:
        return "-" if x is None else f"{x:.{nd}f}"

    rej = c["rejection"]
    parts = [
        f"other called other {f(rej['other_called_other']['all']['share'])}",
        f"F/G/K called other {f(rej['fgk_called_other']['all']['share'])}",
    ]
    if c.get("subclass"):
        parts.append(f"subclass within one {f(c['subclass']['all']['within_one'])}")
    if c.get("params"):
        parts.append(f"Teff scatter {f(c['params']['teff']['all']['robust_std'], 0)} K")
    cal = c["calibration"]["all"]
    parts.append(f"ECE {f(cal['ece_uncalibrated'])} -> {f(cal['ece_calibrated'])}")
    return "catalogue: " + "; ".join(parts)


def evaluate_cmd(
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset HDF5 file.")],
    run_dir: Annotated[Path | None, typer.Argument(help=DEFAULT_RUN_HELP)] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "test",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: RUN_DIR).")] = None,
    which: Annotated[str, typer.Option(help="best or last weights.")] = "best",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Objects per forward pass.")] = 256,
    workers: Annotated[
        int, typer.Option(help="0: read the file in the main thread; >= 1: read the next batch in a background thread.")
    ] = 1,
    fast: Annotated[bool, typer.Option("--fast/--no-fast", help="CPU fast path.")] = True,
) -> None:
    """Paper metrics (Table 3, per-S/N-bin Tables 4-5, confusion matrices) -> metrics.json + confusion.png."""
    from drcnet.models.run_folder import resolve_run
    from drcnet.workflows.evaluate import evaluate_run

    run_dir = resolve_run(run_dir)
    check_outputs([Output(out or run_dir, kind="folder")], files=[data, *run_inputs(run_dir)])  # before any work
    m = evaluate_run(
        run_dir, data, split=split, out=out, which=which, batch_size=batch_size, workers=workers, fast=fast
    )
    t3 = m["table3"]
    conv = {"mk": "MK types", "lamost": "LAMOST's convention"}.get(m.get("label_convention", ""), "the file's labels")
    typer.echo(
        f"{m['model']} (labels: {conv}): S/N>30 accuracy {t3['accuracy']} (n={t3['n']}); per bin: "
        + ", ".join(
            f"{k} {v['accuracy'] if v['accuracy'] is None else round(v['accuracy'], 4)} (n={v['n']})"
            for k, v in m["bins"].items()
        )
    )
    summary = catalogue_summary(m.get("catalogue"))
    if summary:
        typer.echo(summary)
    if m.get("n_bad_input"):
        typer.echo(
            f"{m['n_bad_input']} object(s) have NaN/inf pixels in their input: not classified, left out of "
            "every metric (counts.<bin>.bad_input in metrics.json)"
        )
    typer.echo(f"wrote {(out or run_dir) / 'metrics.json'}")


def predict_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Table to write: .csv, .parquet or .fits.")],
    run_dir: Annotated[
        Path | None,
        typer.Argument(
            help=DEFAULT_RUN_HELP[:-1] + "; or an .onnx file from `drcnet export --onnx` (run by ONNX Runtime)."
        ),
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", "-d", help="Dataset HDF5 file.")] = None,
    exposure: Annotated[
        Path | None,
        typer.Option(
            "--exposure",
            help="Raw exposure folder instead of --data: reduce the frames and write a catalogue + QA page "
            "(same as `drcnet frames classify`).",
        ),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split to predict (default: all objects).")] = None,
    which: Annotated[str, typer.Option(help="best or last weights.")] = "best",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Objects per forward pass.")] = 256,
    workers: Annotated[
        int, typer.Option(help="0: read the file in the main thread; >= 1: read the next batch in a background thread.")
    ] = 1,
    fast: Annotated[bool, typer.Option("--fast/--no-fast", help="CPU fast path.")] = True,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, or bf16 (torch autocast; needs a CPU with AVX512-BF16/AMX or a CUDA GPU with bf16, else "
            "a warning and fp32)."
        ),
    ] = "fp32",
    engine: Annotated[
        str,
        typer.Option(help="torch, or onnx (ONNX Runtime: the model is exported on the fly, or give an .onnx file)."),
    ] = "torch",
) -> None:
    """Catalogue per object -> .csv, .parquet or .fits (object_id, label, pred, prob_F/G/K/other, subclass, ood)."""
    if (data is None) == (exposure is None):
        raise ValueError("give exactly one of --data FILE.h5 (a dataset) or --exposure DIR (raw frames)")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"--precision must be fp32 or bf16, got {precision!r}")
    if engine not in ("torch", "onnx"):
        raise ValueError(f"--engine must be torch or onnx, got {engine!r}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1 object per forward pass, got {batch_size}")
    from drcnet.instrument.exposure import exposure_input_files

    check_outputs(
        [Output(out)],
        files=[p for p in (data,) if p is not None]
        + run_inputs(run_dir)
        + (exposure_input_files(exposure) if exposure is not None else []),
        trees=[exposure] if exposure is not None else (),
    )  # before any work
    if run_dir is not None and run_dir.suffix == ".onnx" and engine != "onnx":
        engine = "onnx"  # an .onnx file can only run on ONNX Runtime
    if exposure is not None:
        if precision != "fp32":
            raise ValueError("--exposure runs in fp32 (torch or --engine onnx); --precision bf16 applies to --data")
        from drcnet.cli.frames import classify_and_print

        try:
            classify_and_print(run_dir, exposure, out, engine=engine)  # the workflow, with the QA page beside --out
        except ImportError as err:  # onnx / onnxruntime missing: one line, exit status 2
            raise RuntimeError(str(err)) from err
        return
    from drcnet.inference.predictor import predict_table

    if precision == "bf16" and engine == "torch":
        from drcnet.inference.engine import bf16_support

        ok, why = bf16_support("cpu")
        if not ok:  # fall back cleanly: one line saying why
            err_console.print(f"[yellow]warning:[/] --precision bf16: {why}; running in fp32")
            precision = "fp32"
    try:  # warnings (e.g. objects with NaN pixels) print as one clean line: friendly_errors
        path = predict_table(
            run_dir,
            data,
            out,
            split=split,
            which=which,
            batch_size=batch_size,
            workers=workers,
            fast=fast,
            precision=precision,
            engine=engine,
        )
    except ImportError as err:  # onnx / onnxruntime missing: one line, exit status 2
        raise RuntimeError(str(err)) from err
    typer.echo(f"wrote {path}")


def calibrate_cmd(
    run_dir: Annotated[
        Path, typer.Argument(help="Run folder from `drcnet train` (writable: calibration.json is written into it).")
    ],
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset HDF5 file with labelled objects.")],
    split: Annotated[str, typer.Option(help="Split to fit on (never the test split you report on).")] = "val",
    coverage: Annotated[float, typer.Option(help="Coverage of the conformal prediction sets, in (0, 1).")] = 0.9,
    which: Annotated[str, typer.Option(help="best or last weights.")] = "best",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Objects per forward pass.")] = 256,
    workers: Annotated[
        int, typer.Option(help="0: read the file in the main thread; >= 1: read the next batch in a background thread.")
    ] = 1,
    fast: Annotated[bool, typer.Option("--fast/--no-fast", help="CPU fast path.")] = True,
    temperature: Annotated[
        str,
        typer.Option(
            help="per-bin: fit one temperature per S/N_r bin; none: keep the model's probabilities (T = 1) and "
            "fit only the OOD and conformal thresholds"
        ),
    ] = "per-bin",
) -> None:
    """Temperature per S/N_r bin, OOD threshold and conformal sets -> RUN_DIR/calibration.json (then used by predict)."""
    from drcnet.conventions import SNR_BIN_NAMES
    from drcnet.workflows.calibrate import calibrate_run

    check_outputs([Output(run_dir / "calibration.json", "calibration.json")], files=[data])  # before any work
    cal, path = calibrate_run(
        run_dir,
        data,
        split=split,
        coverage=coverage,
        which=which,
        batch_size=batch_size,
        workers=workers,
        fast=fast,
        temperature=temperature,
    )
    typer.echo(f"{'S/N_r':>6s} {'n':>6s} {'T':>7s} {'ECE before':>11s} {'ECE after':>10s}")
    for k, name in enumerate(SNR_BIN_NAMES):
        typer.echo(
            f"{name:>6s} {cal.n_objects[k]:6d} {cal.temperatures[k]:7.3f} {cal.ece_before[k]:11.4f} "
            f"{cal.ece_after[k]:10.4f}"
        )
    typer.echo(
        f"OOD energy threshold {cal.ood_threshold:.4f}; conformal threshold {cal.conformal_qhat} at coverage "
        f"{cal.coverage}"
    )
    typer.echo(f"wrote {path}")


def export_cmd(
    onnx: Annotated[
        str, typer.Option("--onnx", help="Run folder or shipped model name (`drcnet models`) to export to ONNX.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write (.onnx).")],
    which: Annotated[str, typer.Option(help="best or last weights.")] = "best",
) -> None:
    """Export a model to ONNX (dynamic batch; every output head) for ONNX Runtime: `drcnet predict FILE.onnx`."""
    from drcnet.inference.predictor import export_run_onnx
    from drcnet.models.run_folder import resolve_run

    check_outputs([Output(out)], files=run_inputs(resolve_run(onnx)))  # before any work
    try:
        meta = export_run_onnx(onnx, out, which=which)
    except ImportError as err:  # onnx missing: one line, exit status 2
        raise RuntimeError(str(err)) from err
    typer.echo(
        f"wrote {out} ({meta['model']}, input {meta['input']} {meta['input_kind']}, "
        f"outputs {', '.join(meta['outputs'])})"
    )


def report_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run folders.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset HDF5 file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    split: Annotated[str, typer.Option(help="Split to report on.")] = "test",
) -> None:
    """report.md + report.html: Table 3 vs the paper, Tables 4-5, Figure 7, confusion matrices, curves."""
    from drcnet.workflows.report import make_report

    check_outputs([Output(out, kind="folder")], files=[data, *(f for r in run_dirs for f in run_inputs(r))])
    paths = make_report(run_dirs, data, out, split=split)
    typer.echo(f"wrote {paths['md']} and {paths['html']}")


def models_cmd(
    details: Annotated[bool, typer.Option("--details", help="Print each model's default config.")] = False,
) -> None:
    """List the registered models (input, parameters) and the shipped trained models (version, training)."""
    from drcnet.models import DEFAULT_MODEL, create_model, list_models, shipped_models

    typer.echo("registered models:")
    for name in list_models():
        m = create_model(name)
        typer.echo(f"  {name:14s} input={m.input_kind:14s} parameters={m.num_parameters():,}")
        if details:
            typer.echo("    " + json.dumps(m.config_dict()))
    typer.echo("shipped trained models (use by name: no run folder needed):")
    for s in shipped_models():
        mark = " (default)" if s["name"] == DEFAULT_MODEL else ""
        typer.echo(
            f"  {s['name']}{mark}: {s['model']}, version {s['version']} ({s['git_commit']}), preset "
            f"{s['preset']}, best epoch {s['best_epoch']}; {s['path']}"
        )


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate``, ``predict``, ``export``, ``calibrate``, ``report`` and ``models`` to ``app``."""
    # user-fixable errors (missing files, bad values) become one line and exit status 2
    add_command(app, "train", friendly_errors(train_cmd))
    add_command(app, "evaluate", friendly_errors(evaluate_cmd))
    add_command(app, "predict", friendly_errors(predict_cmd))
    add_command(app, "calibrate", friendly_errors(calibrate_cmd))
    add_command(app, "export", friendly_errors(export_cmd))
    add_command(app, "report", friendly_errors(report_cmd))
    add_command(app, "models", models_cmd)
