"""The ``drcnet train`` command (also ``python -m drcnet train`` for ``torchrun``: :mod:`drcnet.__main__`)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from drcnet.train.config import PRESETS, TrainConfig


def _freeze_parts(freeze: str | None) -> list[str] | None:
    """``--freeze``: None (the preset decides), ``[]`` for ``none``, else the named parts.

    Raises
    ------
    ValueError
        An empty value or an empty name between commas (``--freeze ""``, ``--freeze reduce,``): it would
        silently replace the preset's parts by none.
    """
    if freeze is None:
        return None
    if freeze.strip().lower() == "none":
        return []
    parts = [p.strip() for p in freeze.split(",")]
    if not all(parts):
        raise ValueError(
            f"--freeze {freeze!r}: an empty part name; name the parts (e.g. --freeze net2d.reduce,net2d.backbones), "
            "or --freeze none to train every weight"
        )
    return parts


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM (``kill``, batch-queue time limits, torchrun) into the same clean stop as Ctrl-C.

    Only a flag is set here; the loop raises at its next step (an exception raised inside a signal
    handler can land in a finaliser or weakref callback, where Python prints and drops it).
    """
    from drcnet.train.stop import request_stop

    request_stop(signum)


def train_cmd(
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset HDF5 file (from `drcnet simulate`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (or resume).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Registered model: drcnet, rcnet, ffcnn, hybrid, hybrid_optimal (default with --init-from: the source run's).",
        ),
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help=f"Optimisation defaults: {', '.join(PRESETS)} (default fast).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (default: preset).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch per process (default: preset).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: preset).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adagrad, adamw, adam or sgd (default: preset).")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="Default: preset.")] = None,
    schedule: Annotated[str | None, typer.Option(help="constant, onecycle or cosine (default: preset).")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stop patience in epochs (default: preset).")] = None,
    grad_clip: Annotated[
        float | None, typer.Option("--grad-clip", help="Max gradient norm, 0 = off (default: preset).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0; on --resume the run's own).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in --out.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="DataLoader workers per process (default: 0 on a CPU run with 2 cores or fewer, where a loader process takes a core from the model; else 1).",
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads per process.")] = None,
    fast: Annotated[bool, typer.Option("--fast/--no-fast", help="CPU fast path (same results).")] = True,
    class_weights: Annotated[bool, typer.Option("--class-weights", help="Inverse-frequency class weights.")] = False,
    aux_weight: Annotated[
        float | None,
        typer.Option("--aux-weight", help="Weight of the per-arm auxiliary losses (default: preset; robust 0.3)."),
    ] = None,
    heads_weight: Annotated[
        float | None,
        typer.Option(
            "--heads-weight",
            help="Weight of the catalogue-head loss: subclass, luminosity class, Teff/logg/[Fe/H] (default: preset; survey 0.5).",
        ),
    ] = None,
    init_from: Annotated[
        str | None,
        typer.Option(
            "--init-from",
            help="Warm start from a run folder or shipped model (e.g. drcnet-robust): weights copied where shapes agree. "
            "The hybrid takes a 2D and a 1D run: --init-from drcnet-survey,runs/rcnet.",
        ),
    ] = None,
    freeze: Annotated[
        str | None,
        typer.Option(
            "--freeze",
            help="Comma-separated parts whose weights stay fixed, e.g. reduce,backbones (DRC-Net) or net2d.reduce,net2d.backbones,net1d.backbone (hybrid: dotted names reach inside a network); the finetune preset's default, or 'none'.",
        ),
    ] = None,
    model_config: Annotated[
        str | None, typer.Option("--model-config", help="JSON overrides of the model config.")
    ] = None,
    stop_after_epochs: Annotated[
        int | None, typer.Option("--stop-after-epochs", hidden=True, help="Stop after N epochs as if killed (tests).")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train a model; the run folder gets weights, config, history and checkpoints. Works under torchrun."""
    from drcnet.train.loop import train

    try:
        overrides = json.loads(model_config) if model_config else {}
    except json.JSONDecodeError as err:
        typer.echo(
            f"error: --model-config is not valid JSON ({err}): {model_config!r}; "
            "example: --model-config '{\"fc_widths\": [128, 32]}'",
            err=True,
        )
        raise typer.Exit(2) from err
    try:
        frozen = _freeze_parts(freeze)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    if not isinstance(overrides, dict):
        typer.echo(f"error: --model-config must be a JSON object of config overrides, got {model_config!r}", err=True)
        raise typer.Exit(2)
    from drcnet.cli.common import run_inputs
    from drcnet.outputs import Output, check_outputs

    # --init-from may name a shipped model: resolved (or refused) before --overwrite empties anything, so a
    # run never starts by removing the folder it was to start from
    sources = [s.strip() for s in (init_from or "").split(",") if s.strip()]
    if sources:
        from drcnet.models.run_folder import resolve_run

        for source in sources:
            resolve_run(source)
    check_outputs(
        [Output(out, kind="folder", replaces_folder=overwrite)],
        files=[data, *(f for source in sources for f in run_inputs(source))],
    )
    if model is None:
        if len(sources) != 1:
            typer.echo(
                "error: give --model (drcnet, rcnet, ffcnn, hybrid, hybrid_optimal), or --init-from RUN to take the source run's model",
                err=True,
            )
            raise typer.Exit(2)
        from drcnet.models.run_folder import read_run_json, resolve_run

        try:
            model = str(read_run_json(resolve_run(sources[0])).get("model"))
        except (FileNotFoundError, ValueError, KeyError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from err
    if workers is None:
        from drcnet.train.config import default_workers

        workers = default_workers(device)
    cfg = TrainConfig(
        model=model,
        data=str(data),
        out=str(out),
        preset=preset,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        epochs=epochs,
        patience=patience,
        schedule=schedule,
        grad_clip=grad_clip,
        seed=seed,
        device=device,
        workers=workers,
        fast=fast,
        threads=threads,
        class_weights=class_weights,
        model_config=overrides,
        aux_weight=aux_weight,
        heads_weight=heads_weight,
        init_from=",".join(sources) or None,
        freeze=frozen,
        stop_after_epochs=stop_after_epochs,
        progress=progress,
    )
    # on SIGTERM the run folder says "interrupted" and keeps its last finished epoch for --resume
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        meta = train(cfg, resume=resume, overwrite=overwrite)
    except (FileExistsError, FileNotFoundError, ValueError, KeyError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except KeyboardInterrupt as err:
        typer.echo(
            f"{out}: interrupted ({err or 'Ctrl-C'}); the last finished epoch is kept, continue with "
            f"the same command plus --resume",
            err=True,
        )
        raise typer.Exit(130) from err
    finally:
        signal.signal(signal.SIGTERM, previous)
    if meta.get("status"):
        typer.echo(
            f"{out}: {meta['status']} after epoch {meta['epochs_run']} (best epoch {meta['best_epoch']}, "
            f"val loss {meta['best_val_loss']})"
        )
