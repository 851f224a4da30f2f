"""What runs on a Dask worker for ``drcnet night classify``: one task, one spectrograph of one exposure.

:func:`run_task` is the function the driver (:func:`drcnet.workflows.night.classify_night`)
submits once per :class:`~drcnet.workflows.manifest.TaskSpec`: checksum the inputs, skip when an
earlier run finished the task with the same inputs and settings, else reduce the spectrograph and
classify its object fibers, then write the task's catalogue (Parquet, :func:`_arrow_catalogue`) and
its record (JSON) atomically into the work folder. It never raises: a failure is a record.

The model is loaded once per worker, lazily, by :class:`ModelPlugin` (a Dask worker plugin), or
kept in a per-process cache when the task runs outside Dask. Everything here must stay importable
at module level: Dask pickles :func:`run_task` and :class:`NightSettings` by reference.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drcnet.conventions import CLASSES_WITH_OTHER
from drcnet.inference.table import write_catalogue
from drcnet.workflows.manifest import (
    TaskSpec,
    can_skip,
    file_stats,
    input_checksums,
    input_files,
    read_record,
    write_record,
)

try:  # the plugin base class; tasks still run (sequentially) without distributed installed
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - dask[distributed] is a dependency
    WorkerPlugin = object  # type: ignore[assignment,misc]

__all__ = ["PLUGIN_NAME", "ModelPlugin", "NightSettings", "run_task"]

PLUGIN_NAME = "drcnet-model"


def utc_now() -> str:
    """The time now, UTC, to the second (ISO 8601), as the task records and the manifest write it."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


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
                from drcnet.inference.predictor import Predictor

                self._predictor = Predictor.load(self.run_dir, batch_size=self.batch_size)
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
            from drcnet.inference.predictor import Predictor

            _LOCAL_MODELS[key] = Predictor.load(settings.run_dir, batch_size=settings.batch_size)
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
def _arrow_catalogue(table: Any, spec: TaskSpec, run: int | None) -> Any:
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
    return pa.table(cols)


def _science_run(sr: Any) -> int | None:
    from drcnet.instrument.lamost import parse_raw_name

    name = parse_raw_name(str(sr.arms["blue"].files.get("science", "")))
    return None if name is None else name.run


def _skipped(previous: dict[str, Any], rec: dict[str, Any], t0: float) -> dict[str, Any]:
    out = dict(previous)
    out.update(
        {
            "status": "skipped",
            "worker": rec["worker"],
            "pid": rec["pid"],
            "started_utc": rec["started_utc"],
            "seconds": round(time.perf_counter() - t0, 4),
            "timings": rec["timings"],
            "model_loaded": False,
            "night_id": rec["night_id"],
            "previous_seconds": previous.get("seconds"),
            "rss_mb": _rss_mb(),
            "error": None,
        }
    )
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
    from drcnet.notices import collect
    from drcnet.reduce.arm import ReduceConfig
    from drcnet.workflows.classify_exposure import catalogue_table, predict_objects
    from drcnet.workflows.reduce_exposure import reduce_exposure

    t0, cpu0 = time.perf_counter(), _cpu_s()
    work = Path(settings.work_dir)
    result, record = spec.result_path(work), spec.record_path(work)
    timings: dict[str, float] = {}
    rec: dict[str, Any] = {
        "id": spec.key,
        **spec.as_dict(),
        "status": "failed",
        "worker": _worker_name(),
        "pid": os.getpid(),
        "started_utc": utc_now(),
        "seconds": None,
        "timings": timings,
        "inputs": {},
        "n_fibers": 0,
        "pred_counts": {},
        "result": str(result),
        "error": None,
        "warnings": [],
        "model_loaded": False,
        "fingerprint": settings.fingerprint,
        "night_id": settings.night_id,
        "produced_by": settings.night_id,
    }
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
        with collect(FrameWarning) as caught:  # per thread: night workers may be threads of one process
            (sr,) = reduce_exposure(spec.folder, config, spids=[spec.spid], run=spec.run, data_root=settings.data_root)
        rec["warnings"] = list(caught)
        timings["reduce"] = round(time.perf_counter() - t, 4)
        t = time.perf_counter()
        probs = predict_objects(predictor, sr)
        from drcnet.models.run_folder import run_label_convention

        table = catalogue_table(
            [sr], [probs], getattr(predictor, "calibration", None), run_label_convention(settings.run_dir)
        )
        timings["classify"] = round(time.perf_counter() - t, 4)
        t = time.perf_counter()
        run = spec.run if spec.run is not None else _science_run(sr)
        meta = {
            "provenance": settings.provenance,
            "task": spec.as_dict(),
            "inputs": rec["inputs"],
            "night_id": settings.night_id,
        }
        write_catalogue(_arrow_catalogue(table, spec, run), result, meta, metadata_key="drcnet.task")
        timings["write"] = round(time.perf_counter() - t, 4)
        preds = np.asarray(table["pred"])
        rec.update(
            status="ok",
            n_fibers=len(table),
            run=run,
            pred_counts={c: int(np.sum(preds == c)) for c in CLASSES_WITH_OTHER},
        )
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
