"""A survey night on a Dask cluster: every exposure under a root, one merged catalogue, resumable.

:func:`classify_night` is what ``drcnet night classify ROOT --out CATALOGUE.parquet`` runs:

1. :func:`drcnet.workflows.manifest.discover_tasks` finds every exposure folder under ROOT and
   makes one task per (exposure, spectrograph) from the file names;
2. each task runs as a ``dask.distributed`` task (:func:`run_task`) on a ``LocalCluster`` (default) or
   on the workers of an existing scheduler: checksum the inputs, skip when an earlier run finished
   it with the same inputs and settings, else reduce the spectrograph
   (:func:`drcnet.workflows.reduce_exposure.reduce_exposure` with ``spids=[spid]``) and classify
   its object fibers (:func:`drcnet.workflows.classify_exposure.predict_objects` /
   :func:`~drcnet.workflows.classify_exposure.catalogue_table`, the engine of ``frames classify``);
   the model is loaded once per worker, lazily (:class:`ModelPlugin`, a Dask worker plugin);
   what runs on a worker lives in :mod:`drcnet.workflows.night_task`;
3. each task writes its own catalogue (Parquet) and record (JSON: status, timings, input
   SHA-256s, error) atomically into the work folder ``<out stem>.work/<exposure>/spNN.*``;
   a failing task is caught and recorded there, and the others go on;
4. the client merges the finished tasks' catalogues into ``CATALOGUE.parquet`` and
   ``CATALOGUE.fits`` (:mod:`drcnet.workflows.night_catalogue`) and writes
   ``CATALOGUE.manifest.json`` (every task of this run).

Workers must see ROOT and the work folder at the same paths as the client (a shared
filesystem on a real cluster); only small task records travel through the scheduler.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drcnet.inference.table import write_catalogue
from drcnet.provenance import provenance, write_json_atomic
from drcnet.workflows.manifest import (
    MANIFEST_FORMAT,
    TaskSpec,
    discover_tasks,
    settings_fingerprint,
)
from drcnet.workflows.night_catalogue import merge_catalogues
from drcnet.workflows.night_task import (
    PLUGIN_NAME,
    ModelPlugin,
    NightSettings,
    run_task,
    utc_now,
)

__all__ = ["ModelPlugin", "NightResult", "NightSettings", "classify_night", "run_task", "work_dir_for"]

KEY_COLUMNS = ("exposure", "planid", "run", "spid", "fiber")
EXIT_TASKS_FAILED = 3
"""Exit status of ``drcnet night classify`` when at least one task failed (the rest is written)."""


def work_dir_for(out: str | Path) -> Path:
    """The work folder of a catalogue: ``night.parquet`` -> ``night.work/`` beside it."""
    out = Path(out)
    return out.with_name(out.name.split(".")[0] + ".work")


def manifest_path_for(out: str | Path) -> Path:
    """The run manifest of a catalogue: ``night.parquet`` -> ``night.manifest.json``."""
    out = Path(out)
    return out.with_name(out.name.split(".")[0] + ".manifest.json")


# -- the night ------------------------------------------------------------------------------------
@dataclass
class NightResult:
    """What :func:`classify_night` wrote and how it went."""

    catalogue: Path
    fits: Path
    manifest: Path
    work_dir: Path
    records: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The records of the failed tasks."""
        return [r for r in self.records if r["status"] != "ok" and r["status"] != "skipped"]


def model_description(run_dir: str | Path) -> dict[str, Any]:
    """The model part of the settings fingerprint: name, run folder and the weights' SHA-256.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a run folder (no ``run.json`` or no ``best.safetensors``).
    """
    from drcnet.models.run_folder import BEST, file_sha256, read_run

    info = read_run(run_dir)
    weights = Path(run_dir) / BEST
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir}: no {BEST} in this run folder")
    return {"name": info.model_name, "run_dir": str(Path(run_dir).resolve()), "weights_sha256": file_sha256(weights)}


def _lost_record(spec: TaskSpec, settings: NightSettings, exc: BaseException) -> dict[str, Any]:
    """A record for a task whose worker died or that was cancelled (nothing came back)."""
    return {
        "id": spec.key,
        **spec.as_dict(),
        "status": "failed",
        "worker": None,
        "started_utc": None,
        "seconds": None,
        "timings": {},
        "inputs": {},
        "n_fibers": 0,
        "pred_counts": {},
        "result": str(spec.result_path(settings.work_dir)),
        "error": f"{type(exc).__name__}: {exc}",
        "warnings": [],
        "model_loaded": False,
        "fingerprint": settings.fingerprint,
        "night_id": settings.night_id,
        "produced_by": None,
    }


def _summary(
    specs: list[TaskSpec], records: list[dict[str, Any]], rows: int, seconds: float, task_seconds: float
) -> dict[str, Any]:
    status = [r["status"] for r in records]
    new_fibers = int(sum(r.get("n_fibers", 0) for r in records if r["status"] == "ok"))
    return {
        "exposures": len({s.exposure for s in specs}),
        "tasks": len(specs),
        "ok": status.count("ok"),
        "skipped": status.count("skipped"),
        "failed": len(records) - status.count("ok") - status.count("skipped"),
        "fibers": rows,
        "fibers_new": new_fibers,
        "seconds": round(seconds, 3),
        "task_seconds": round(task_seconds, 3),
        "fibers_per_s": round(new_fibers / task_seconds, 2) if task_seconds > 0 else 0.0,
        "models_loaded": int(sum(bool(r.get("model_loaded")) for r in records)),
    }


def _start_client(
    scheduler: str | None, workers: int | None, n_tasks: int, processes: bool, threads_per_worker: int
) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="60s"), None
    n = max(1, workers or min(os.cpu_count() or 1, max(n_tasks, 1)))
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=threads_per_worker,
        processes=processes,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster


def classify_night(
    root: str | Path,
    out: str | Path,
    run_dir: str | Path | None = None,
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    threads_per_worker: int = 1,
    arm_threads: int = 1,
    config: Any = None,
    force: bool = False,
    trust_mtime: bool = False,
    data_root: str | Path | None = None,
    batch_size: int = 64,
    on_start: Callable[[int], None] | None = None,
    on_task: Callable[[dict[str, Any]], None] | None = None,
) -> NightResult:
    """Classify every exposure under ``root`` on a Dask cluster into one merged catalogue.

    Parameters
    ----------
    root
        Night root: exposure folders (raw frames + fiber maps) anywhere below it.
    out
        Merged catalogue, ``.parquet``; ``.fits`` and ``.manifest.json`` are written beside it,
        and the per-task results in the work folder ``<stem>.work/``.
    run_dir
        Training run folder; default the shipped model (:data:`drcnet.models.DEFAULT_MODEL`).
    client
        An existing ``distributed.Client`` (kept open); else ``scheduler`` or a new ``LocalCluster``.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``).
    workers
        Workers of the ``LocalCluster`` (default: one per core, at most one per task).
    processes
        ``LocalCluster`` workers as processes (default) or threads of this process.
    arm_threads
        Threads per task for the two arms (:class:`~drcnet.reduce.arm.ReduceConfig`'s ``threads``;
        1 by default: the parallelism comes from the workers). Ignored when ``config`` is given.
    force
        Redo every task, finished or not.
    trust_mtime
        Skip a finished task when its inputs' sizes and mtimes are unchanged, without hashing them.
    on_start, on_task
        Progress callbacks: the number of tasks, then each task's record as it finishes.

    Raises
    ------
    FileNotFoundError
        ``root`` or the run folder does not exist; no exposure folder under ``root``.
    ValueError
        ``out`` does not end in ``.parquet``.
    """
    from drcnet.reduce.arm import ReduceConfig

    t_start = time.perf_counter()
    root, out = Path(root), Path(out)
    if not out.name.lower().endswith(".parquet"):
        raise ValueError(f"{out}: the night catalogue must end in .parquet (a .fits copy is written beside it)")
    from drcnet.models.run_folder import resolve_run

    run_dir = resolve_run(run_dir).resolve()
    work = work_dir_for(out).resolve()
    specs = discover_tasks(root, skip=[work])
    if not specs:
        raise FileNotFoundError(f"{root}: no exposure folders (LAMOST raw frames r?-XX?-PLANID-RUN-MJD.fit) under it")
    config = config or ReduceConfig(threads=arm_threads)
    reduce_cfg = config.model_dump(mode="json")
    model = model_description(run_dir)
    fingerprint = settings_fingerprint(model, reduce_cfg)
    night_id = uuid.uuid4().hex[:12]
    prov_config = {
        "root": str(root.resolve()),
        "out": str(out.resolve()),
        "model": model,
        "reduce": reduce_cfg,
        "scheduler": scheduler,
        "workers": workers,
        "force": force,
        "trust_mtime": trust_mtime,
        "night_id": night_id,
    }
    prov = provenance(prov_config)
    settings = NightSettings(
        run_dir=str(run_dir),
        fingerprint=fingerprint,
        reduce_config=reduce_cfg,
        work_dir=str(work),
        night_id=night_id,
        provenance=prov,
        data_root=None if data_root is None else str(Path(data_root).resolve()),
        force=force,
        trust_mtime=trust_mtime,
        batch_size=batch_size,
    )
    work.mkdir(parents=True, exist_ok=True)

    own_client, cluster = (
        (client, None)
        if client is not None
        else _start_client(scheduler, workers, len(specs), processes, threads_per_worker)
    )
    records: dict[str, dict[str, Any]] = {}
    if on_start is not None:
        on_start(len(specs))
    cluster_info: dict[str, Any] = {}
    t_submit = time.perf_counter()
    try:
        from distributed import as_completed

        own_client.register_plugin(ModelPlugin(str(run_dir), batch_size), name=PLUGIN_NAME)
        cluster_info = {
            "scheduler": own_client.scheduler.address,
            "workers": len(own_client.scheduler_info().get("workers", {})),
        }
        by_key = {}
        futures = []
        for spec in specs:
            fut = own_client.submit(run_task, spec, settings, key=f"drcnet-night-{night_id}-{spec.key}", pure=False)
            by_key[fut.key] = spec
            futures.append(fut)
        try:
            for fut in as_completed(futures):
                spec = by_key[fut.key]
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died or the task was lost
                    rec = _lost_record(spec, settings, exc)
                records[spec.key] = rec
                if on_task is not None:
                    on_task(rec)
        except KeyboardInterrupt:
            own_client.cancel(futures)
            for spec in specs:
                records.setdefault(spec.key, _lost_record(spec, settings, KeyboardInterrupt("cancelled")))
            _write_manifest(manifest_path_for(out), prov, specs, records, {"interrupted": True}, cluster_info)
            raise
    finally:
        if client is None:
            own_client.close()
            if cluster is not None:
                cluster.close()
    task_seconds = time.perf_counter() - t_submit

    ordered = [records[s.key] for s in specs]
    done = [Path(r["result"]) for r in ordered if r["status"] in ("ok", "skipped")]
    merged = merge_catalogues(done)
    write_catalogue(merged, out, prov)  # Parquet, provenance in the schema metadata
    fits_path = write_catalogue(merged, out.with_name(out.name[: -len(".parquet")] + ".fits"), prov)
    summary = _summary(specs, ordered, merged.num_rows, time.perf_counter() - t_start, task_seconds)
    manifest = _write_manifest(manifest_path_for(out), prov, specs, records, summary, cluster_info)
    return NightResult(
        catalogue=out, fits=fits_path, manifest=manifest, work_dir=work, records=ordered, summary=summary
    )


def _write_manifest(
    path: Path,
    prov: dict[str, Any],
    specs: list[TaskSpec],
    records: dict[str, dict[str, Any]],
    summary: dict[str, Any],
    cluster: dict[str, Any],
) -> Path:
    tasks = [records[s.key] for s in specs if s.key in records]
    return write_json_atomic(
        path,
        {
            "format": MANIFEST_FORMAT,
            "provenance": prov,
            "finished_utc": utc_now(),
            "cluster": cluster,
            "summary": summary,
            "tasks": tasks,
        },
    )


def summary_line(summary: dict[str, Any]) -> str:
    """One line for logs: exposures, tasks, fibers, failures, fibers/s."""
    s = summary
    return (
        f"{s['exposures']} exposures, {s['tasks']} spectrographs ({s['ok']} classified, {s['skipped']} already "
        f"done, {s['failed']} failed); {s['fibers']} object fibers in the catalogue, {s['fibers_new']} new at "
        f"{s['fibers_per_s']:.1f} fibers/s ({s['task_seconds']:.1f} s of tasks, {s['seconds']:.1f} s in all)"
    )
