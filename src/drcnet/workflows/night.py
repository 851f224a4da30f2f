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
3. each task writes its own catalogue (Parquet) and record (JSON: status, timings, input
   SHA-256s, error) atomically into the work folder ``<out stem>.work/<exposure>/spNN.*``;
   a failing task is caught and recorded there, and the others go on;
4. the client merges the finished tasks' catalogues into ``CATALOGUE.parquet`` and
   ``CATALOGUE.fits`` and writes ``CATALOGUE.manifest.json`` (every task of this run).

Workers must see ROOT and the work folder at the same paths as the client (a shared
filesystem on a real cluster); only small task records travel through the scheduler.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.conventions import CLASSES
from drcnet.provenance import atomic_path, provenance, write_json_atomic
from drcnet.workflows.manifest import (
    MANIFEST_FORMAT,
    TaskSpec,
    can_skip,
    discover_tasks,
    file_stats,
    input_checksums,
    input_files,
    read_record,
    settings_fingerprint,
    write_record,
)

try:  # the plugin base class; tasks still run (sequentially) without distributed installed
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - dask[distributed] is a dependency
    WorkerPlugin = object  # type: ignore[assignment,misc]

__all__ = ["ModelPlugin", "NightResult", "NightSettings", "classify_night", "run_task", "work_dir_for"]

PLUGIN_NAME = "drcnet-model"
KEY_COLUMNS = ("exposure", "planid", "run", "spid", "fiber")
EXIT_TASKS_FAILED = 3
"""Exit status of ``drcnet night classify`` when at least one task failed (the rest is written)."""


def _utc() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def work_dir_for(out: str | Path) -> Path:
    """The work folder of a catalogue: ``night.parquet`` -> ``night.work/`` beside it."""
    out = Path(out)
    return out.with_name(out.name.split(".")[0] + ".work")


def manifest_path_for(out: str | Path) -> Path:
    """The run manifest of a catalogue: ``night.parquet`` -> ``night.manifest.json``."""
    out = Path(out)
    return out.with_name(out.name.split(".")[0] + ".manifest.json")


@dataclass(frozen=True)
class NightSettings:
    """What every task needs besides its :class:`TaskSpec` (sent once with each task; small)."""

    run_dir: str
    fingerprint: str
    reduce_config: dict[str, Any]
    work_dir: str
    night_id: str
    provenance: dict[str, Any]
    data_root: str | None = None
    force: bool = False
    trust_mtime: bool = False
    batch_size: int = 64


# -- the model, once per worker ---------------------------------------------------------------------
_LOCAL_MODELS: dict[tuple[str, int], Any] = {}
_LOCAL_LOCK = threading.Lock()


class ModelPlugin(WorkerPlugin):  # type: ignore[misc,valid-type]
    """A Dask worker plugin holding the worker's predictor, loaded at the first task that needs it.

    Registered once per run (``client.register_plugin``); every worker gets its own copy, so
    the model is read from disk once per worker, whatever the number of tasks, and not at all
    on a worker whose tasks are all skipped.
    """

    name = PLUGIN_NAME

    def __init__(self, run_dir: str, batch_size: int = 64) -> None:
        self.run_dir = str(run_dir)
        self.batch_size = int(batch_size)
        self._predictor: Any = None
        self._lock: threading.Lock | None = None

    def setup(self, worker: Any = None) -> None:
        """Called by the worker when the plugin arrives (nothing is loaded yet)."""
        self._lock = threading.Lock()
        self._predictor = None

    def teardown(self, worker: Any = None) -> None:
        """Drop the model."""
        self._predictor = None

    def predictor(self) -> tuple[Any, bool]:
        """The predictor, and whether this call loaded it."""
        if self._lock is None:
            self._lock = threading.Lock()
        with self._lock:
            if self._predictor is None:
                from drcnet.workflows.classify_exposure import load_predictor

                self._predictor = load_predictor(self.run_dir, self.batch_size)[0]
                return self._predictor, True
            return self._predictor, False

    def __getstate__(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "batch_size": self.batch_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["run_dir"], state["batch_size"])  # type: ignore[misc]


def _current_worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _predictor_for(settings: NightSettings) -> tuple[Any, bool]:
    """This worker's predictor (its :class:`ModelPlugin`), else a per-process cache outside Dask."""
    worker = _current_worker()
    plugin = getattr(worker, "plugins", {}).get(PLUGIN_NAME) if worker is not None else None
    if isinstance(plugin, ModelPlugin) and plugin.run_dir == settings.run_dir:
        return plugin.predictor()
    key = (settings.run_dir, settings.batch_size)
    with _LOCAL_LOCK:
        if key not in _LOCAL_MODELS:
            from drcnet.workflows.classify_exposure import load_predictor

            _LOCAL_MODELS[key] = load_predictor(settings.run_dir, settings.batch_size)[0]
            return _LOCAL_MODELS[key], True
        return _LOCAL_MODELS[key], False


def _worker_name() -> str:
    worker = _current_worker()
    return str(getattr(worker, "address", "")) or f"local-{os.getpid()}"


def _cpu_s() -> float:
    """CPU seconds of this process (all threads): per task exact with one thread per worker process."""
    t = os.times()
    return t.user + t.system


def _rss_mb() -> float | None:
    try:
        import psutil

        return round(psutil.Process().memory_info().rss / 2**20, 1)
    except Exception:  # noqa: BLE001 - memory is informative only
        return None


# -- one task ---------------------------------------------------------------------------------------
def _arrow_catalogue(table: Any, spec: TaskSpec, run: int | None, meta: dict[str, Any]) -> Any:
    """The task's catalogue (astropy Table) as a pyarrow table with the key columns first."""
    import pyarrow as pa

    n = len(table)
    cols: dict[str, Any] = {
        "exposure": pa.array([spec.exposure] * n, pa.string()),
        "planid": pa.array([spec.planid] * n, pa.string()),
        "run": pa.array([run] * n, pa.int64()),
        "spid": pa.array(np.full(n, spec.spid, dtype=np.int64)),
    }
    for name in table.colnames:
        if name == "spid":
            continue
        values = np.asarray(table[name])
        if values.dtype.kind == "U":
            cols[name] = pa.array(values.tolist(), pa.string())
        elif name in ("fiber", "flags"):
            cols[name] = pa.array(values.astype(np.int64))
        else:
            cols[name] = pa.array(values)
    out = pa.table(cols)
    return out.replace_schema_metadata({"drcnet.task": json.dumps(meta, default=str)})


def _science_run(sr: Any) -> int | None:
    from drcnet.instrument.lamost import parse_raw_name

    name = parse_raw_name(str(sr.arms["blue"].files.get("science", "")))
    return None if name is None else name.run


def _skipped(previous: dict[str, Any], rec: dict[str, Any], t0: float) -> dict[str, Any]:
    out = dict(previous)
    out.update({"status": "skipped", "worker": rec["worker"], "pid": rec["pid"], "started_utc": rec["started_utc"],
                "seconds": round(time.perf_counter() - t0, 4), "timings": rec["timings"], "model_loaded": False,
                "night_id": rec["night_id"], "previous_seconds": previous.get("seconds"),
                "rss_mb": _rss_mb(), "error": None})
    out.setdefault("produced_by", previous.get("night_id"))
    return out


def run_task(spec: TaskSpec, settings: NightSettings) -> dict[str, Any]:
    """Reduce and classify one spectrograph of one exposure, or skip it when it is already done.

    Never raises: any error is caught and returned (and written) as a ``failed`` record.

    Returns
    -------
    dict
        The task's record: ``id``, the spec, ``status`` (``ok``, ``skipped`` or ``failed``),
        ``worker``, ``started_utc``, ``seconds``, ``timings`` (checksum, load_model, reduce,
        classify, write), ``cpu_s``, ``inputs`` (name -> sha256, size, mtime_ns), ``n_fibers``, ``pred_counts``,
        ``result``, ``error`` (+ ``traceback``), ``warnings``, ``model_loaded``, ``rss_mb``,
        ``produced_by`` (the night run that made the result).
    """
    from drcnet.instrument.errors import FrameWarning
    from drcnet.reduce.arm import ReduceConfig
    from drcnet.workflows.classify_exposure import catalogue_table, predict_objects
    from drcnet.workflows.reduce_exposure import reduce_exposure

    t0, cpu0 = time.perf_counter(), _cpu_s()
    work = Path(settings.work_dir)
    result, record = spec.result_path(work), spec.record_path(work)
    timings: dict[str, float] = {}
    rec: dict[str, Any] = {"id": spec.key, **spec.as_dict(), "status": "failed", "worker": _worker_name(),
                           "pid": os.getpid(), "started_utc": _utc(), "seconds": None, "timings": timings,
                           "inputs": {}, "n_fibers": 0, "pred_counts": {}, "result": str(result), "error": None,
                           "warnings": [], "model_loaded": False, "fingerprint": settings.fingerprint,
                           "night_id": settings.night_id, "produced_by": settings.night_id}
    previous = None if settings.force else read_record(record)
    try:
        files = input_files(spec)
        if not files:
            raise FileNotFoundError(f"{spec.folder}: no files of spectrograph {spec.spid} any more")
        if settings.trust_mtime and previous is not None:
            t = time.perf_counter()
            stats = file_stats(files)
            timings["stat"] = round(time.perf_counter() - t, 4)
            if can_skip(previous, result, settings.fingerprint, stats, by="stat"):
                return _skipped(previous, rec, t0)
        t = time.perf_counter()
        rec["inputs"] = input_checksums(files)
        timings["checksum"] = round(time.perf_counter() - t, 4)
        if can_skip(previous, result, settings.fingerprint, rec["inputs"], by="sha256"):
            return _skipped(previous, rec, t0)

        t = time.perf_counter()
        predictor, rec["model_loaded"] = _predictor_for(settings)
        timings["load_model"] = round(time.perf_counter() - t, 4)
        t = time.perf_counter()
        config = ReduceConfig.model_validate(settings.reduce_config)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FrameWarning)
            (sr,) = reduce_exposure(spec.folder, config, spids=[spec.spid], run=spec.run,
                                    data_root=settings.data_root)
        rec["warnings"] = [str(w.message) for w in caught if issubclass(w.category, FrameWarning)]
        timings["reduce"] = round(time.perf_counter() - t, 4)
        t = time.perf_counter()
        probs = predict_objects(predictor, sr)
        table = catalogue_table([sr], [probs])
        timings["classify"] = round(time.perf_counter() - t, 4)
        t = time.perf_counter()
        run = spec.run if spec.run is not None else _science_run(sr)
        meta = {"provenance": settings.provenance, "task": spec.as_dict(), "inputs": rec["inputs"],
                "night_id": settings.night_id}
        arrow = _arrow_catalogue(table, spec, run, meta)
        import pyarrow.parquet as pq

        with atomic_path(result) as tmp:
            pq.write_table(arrow, tmp)
        timings["write"] = round(time.perf_counter() - t, 4)
        preds = np.asarray(table["pred"])
        rec.update(status="ok", n_fibers=len(table), run=run,
                   pred_counts={c: int(np.sum(preds == c)) for c in CLASSES})
    except Exception as exc:  # noqa: BLE001 - one bad spectrograph must not stop the night
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc(limit=-4)
        try:
            result.unlink(missing_ok=True)  # a stale result must not be merged for a failed task
        except OSError:
            pass
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    rec["cpu_s"] = round(_cpu_s() - cpu0, 3)
    rec["rss_mb"] = _rss_mb()
    try:
        write_record(record, rec)
    except OSError as exc:
        rec["status"], rec["error"] = "failed", f"cannot write the task record {record}: {exc}"
    return rec


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
    return {"id": spec.key, **spec.as_dict(), "status": "failed", "worker": None, "started_utc": None,
            "seconds": None, "timings": {}, "inputs": {}, "n_fibers": 0, "pred_counts": {},
            "result": str(spec.result_path(settings.work_dir)), "error": f"{type(exc).__name__}: {exc}",
            "warnings": [], "model_loaded": False, "fingerprint": settings.fingerprint,
            "night_id": settings.night_id, "produced_by": None}


def merge_catalogues(paths: list[Path]) -> Any:
    """The per-task catalogues as one pyarrow table sorted by exposure, run, spectrograph, fiber.

    Tables with and without the truth columns are merged; missing values are null.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p).replace_schema_metadata(None) for p in paths]
    if not tables:
        return pa.table({"exposure": pa.array([], pa.string()), "planid": pa.array([], pa.string()),
                         "run": pa.array([], pa.int64()), "spid": pa.array([], pa.int64()),
                         "fiber": pa.array([], pa.int64())})
    merged = pa.concat_tables(tables, promote_options="default")
    return merged.sort_by([("exposure", "ascending"), ("run", "ascending"), ("spid", "ascending"),
                           ("fiber", "ascending")])


def write_fits_catalogue(table: Any, path: Path, prov: dict[str, Any]) -> Path:
    """The merged catalogue as a FITS binary table (nulls: "" / NaN / -1 / False), provenance in the header."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from astropy.io import fits
    from astropy.table import Table

    from drcnet.instrument.lamost import provenance_cards

    cols: dict[str, Any] = {}
    for name in table.column_names:
        col = table[name]
        typ = col.type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            vals = pc.fill_null(col, "").to_pylist()
            cols[name] = np.array(vals, dtype=str) if vals else np.array([], dtype="U1")
        elif pa.types.is_floating(typ):
            cols[name] = pc.fill_null(col, np.nan).to_numpy()
        elif pa.types.is_integer(typ):
            cols[name] = pc.fill_null(col, -1).to_numpy()
        elif pa.types.is_boolean(typ):
            cols[name] = pc.fill_null(col, False).to_numpy(zero_copy_only=False)
        else:
            cols[name] = np.array([str(v) for v in col.to_pylist()], dtype=str)
    hdu = fits.BinTableHDU(Table(cols), name="CATALOGUE")
    for key, value, comment in provenance_cards(prov):
        hdu.header[key] = (value, comment)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    return path


def _summary(specs: list[TaskSpec], records: list[dict[str, Any]], rows: int, seconds: float,
             task_seconds: float) -> dict[str, Any]:
    status = [r["status"] for r in records]
    new_fibers = int(sum(r.get("n_fibers", 0) for r in records if r["status"] == "ok"))
    return {"exposures": len({s.exposure for s in specs}), "tasks": len(specs), "ok": status.count("ok"),
            "skipped": status.count("skipped"), "failed": len(records) - status.count("ok") - status.count("skipped"),
            "fibers": rows, "fibers_new": new_fibers, "seconds": round(seconds, 3),
            "task_seconds": round(task_seconds, 3),
            "fibers_per_s": round(new_fibers / task_seconds, 2) if task_seconds > 0 else 0.0,
            "models_loaded": int(sum(bool(r.get("model_loaded")) for r in records))}


def _start_client(scheduler: str | None, workers: int | None, n_tasks: int, processes: bool,
                  threads_per_worker: int) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="60s"), None
    n = max(1, workers or min(os.cpu_count() or 1, max(n_tasks, 1)))
    cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=processes,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    return Client(cluster), cluster


def classify_night(root: str | Path, out: str | Path, run_dir: str | Path | None = None, *,
                   client: Any = None, scheduler: str | None = None, workers: int | None = None,
                   processes: bool = True, threads_per_worker: int = 1, arm_threads: int = 1,
                   config: Any = None, force: bool = False, trust_mtime: bool = False,
                   data_root: str | Path | None = None, batch_size: int = 64,
                   on_start: Callable[[int], None] | None = None,
                   on_task: Callable[[dict[str, Any]], None] | None = None) -> NightResult:
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
    if run_dir is None:
        from drcnet.models import DEFAULT_MODEL, pretrained_dir

        run_dir = pretrained_dir(DEFAULT_MODEL)
    run_dir = Path(run_dir).resolve()
    work = work_dir_for(out).resolve()
    specs = discover_tasks(root, skip=[work])
    if not specs:
        raise FileNotFoundError(f"{root}: no exposure folders (LAMOST raw frames r?-XX?-PLANID-RUN-MJD.fit) under it")
    config = config or ReduceConfig(threads=arm_threads)
    reduce_cfg = config.model_dump(mode="json")
    model = model_description(run_dir)
    fingerprint = settings_fingerprint(model, reduce_cfg)
    night_id = uuid.uuid4().hex[:12]
    prov_config = {"root": str(root.resolve()), "out": str(out.resolve()), "model": model, "reduce": reduce_cfg,
                   "scheduler": scheduler, "workers": workers, "force": force, "trust_mtime": trust_mtime,
                   "night_id": night_id}
    prov = provenance(prov_config)
    settings = NightSettings(run_dir=str(run_dir), fingerprint=fingerprint, reduce_config=reduce_cfg,
                             work_dir=str(work), night_id=night_id, provenance=prov,
                             data_root=None if data_root is None else str(Path(data_root).resolve()),
                             force=force, trust_mtime=trust_mtime, batch_size=batch_size)
    work.mkdir(parents=True, exist_ok=True)

    own_client, cluster = (client, None) if client is not None else _start_client(
        scheduler, workers, len(specs), processes, threads_per_worker)
    records: dict[str, dict[str, Any]] = {}
    if on_start is not None:
        on_start(len(specs))
    cluster_info: dict[str, Any] = {}
    t_submit = time.perf_counter()
    try:
        from distributed import as_completed

        own_client.register_plugin(ModelPlugin(str(run_dir), batch_size), name=PLUGIN_NAME)
        cluster_info = {"scheduler": own_client.scheduler.address,
                        "workers": len(own_client.scheduler_info().get("workers", {}))}
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
    merged = merged.replace_schema_metadata({"drcnet.provenance": json.dumps(prov, default=str)})
    import pyarrow.parquet as pq

    with atomic_path(out) as tmp:
        pq.write_table(merged, tmp)
    fits_path = write_fits_catalogue(merged, out.with_name(out.name[: -len(".parquet")] + ".fits"), prov)
    summary = _summary(specs, ordered, merged.num_rows, time.perf_counter() - t_start, task_seconds)
    manifest = _write_manifest(manifest_path_for(out), prov, specs, records, summary, cluster_info)
    return NightResult(catalogue=out, fits=fits_path, manifest=manifest, work_dir=work, records=ordered,
                       summary=summary)


def _write_manifest(path: Path, prov: dict[str, Any], specs: list[TaskSpec], records: dict[str, dict[str, Any]],
                    summary: dict[str, Any], cluster: dict[str, Any]) -> Path:
    tasks = [records[s.key] for s in specs if s.key in records]
    return write_json_atomic(path, {"format": MANIFEST_FORMAT, "provenance": prov, "finished_utc": _utc(),
                                    "cluster": cluster, "summary": summary, "tasks": tasks})


def summary_line(summary: dict[str, Any]) -> str:
    """One line for logs: exposures, tasks, fibers, failures, fibers/s."""
    s = summary
    return (f"{s['exposures']} exposures, {s['tasks']} spectrographs ({s['ok']} classified, {s['skipped']} already "
            f"done, {s['failed']} failed); {s['fibers']} object fibers in the catalogue, {s['fibers_new']} new at "
            f"{s['fibers_per_s']:.1f} fibers/s ({s['task_seconds']:.1f} s of tasks, {s['seconds']:.1f} s in all)")
