"""``drcnet night classify``: many exposures on a Dask cluster, one merged catalogue, resumable.

The integration test builds a night of 2 exposures x 2 spectrographs from the session's shared
simulated exposure (spectrograph 1, seed 7) plus spectrograph 2 of the same plate (simulated
once per session under a lock): exposure A links all of them, exposure B links the same files
but holds a truncated copy of spectrograph 2's red science frame. A ``LocalCluster`` with 2
thread workers runs it three times: the first run catalogues every object fiber of the three
good spectrographs and names the bad one; the second run (through the CLI) reuses the three
finished results and redoes only the failed one; after the bad frame is repaired, the third
run redoes that one alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from _support.exposure import SEED, full_exposure, linked_copy, shared_root, templates
from drcnet.workflows.manifest import (
    TaskSpec,
    can_skip,
    discover_tasks,
    exposure_folders,
    input_checksums,
    input_files,
    settings_fingerprint,
)


# -- unit tests: discovery, checksums, skip rule ------------------------------------------------------
def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(n.encode())


def _spectrograph_files(spid: int, plan: str, science_runs: tuple[int, ...] = (10007,)) -> list[str]:
    out = [f"fibermap-{plan}-sp{spid:02d}.fits"]
    for arm in "br":
        out += [
            f"rb-{spid:02d}{arm}-{plan}-10000-1.fit",
            f"rf-{spid:02d}{arm}-{plan}-10005-2.fit",
            f"ra-{spid:02d}{arm}-{plan}-10006-3.fit",
        ]
        out += [f"ro-{spid:02d}{arm}-{plan}-{r}-4.fit" for r in science_runs]
    return out


def test_discover_finds_every_exposure_and_spectrograph(tmp_path):
    root = tmp_path / "night"
    _touch(root / "n1" / "PLANA", *_spectrograph_files(1, "PLANA"), *_spectrograph_files(2, "PLANA"), "notes.txt")
    _touch(root / "n2" / "PLANB", *_spectrograph_files(3, "PLANB", science_runs=(10007, 10008)))
    _touch(root / ".hidden" / "X", *_spectrograph_files(1, "X"))
    _touch(root / "night.work" / "Y", *_spectrograph_files(1, "Y"))
    _touch(root / "empty")

    folders = exposure_folders(root, skip=[root / "night.work"])
    assert [f.relative_to(root).as_posix() for f in folders] == ["n1/PLANA", "n2/PLANB"]
    tasks = discover_tasks(root, skip=[root / "night.work"])
    assert [t.key for t in tasks] == ["n1/PLANA/sp01", "n1/PLANA/sp02", "n2/PLANB/sp03-r10007", "n2/PLANB/sp03-r10008"]
    assert {t.planid for t in tasks} == {"PLANA", "PLANB"}
    assert tasks[0].run is None and tasks[2].run == 10007
    # a task reads its spectrograph's frames, its fiber map and only its own science run
    names = {p.name for p in input_files(tasks[2])}
    assert "ro-03b-PLANB-10007-4.fit" in names and "ro-03b-PLANB-10008-4.fit" not in names
    assert "fibermap-PLANB-sp03.fits" in names and len(names) == 9
    assert not any("-01" in n for n in names)
    # the root itself may be the exposure folder
    single = discover_tasks(root / "n1" / "PLANA")
    assert [t.key for t in single] == ["PLANA/sp01", "PLANA/sp02"]
    with pytest.raises(FileNotFoundError):
        discover_tasks(tmp_path / "missing")


def test_skip_only_when_done_and_inputs_and_settings_unchanged(tmp_path):
    folder = tmp_path / "EXP"
    _touch(folder, *_spectrograph_files(1, "EXP"))
    spec = TaskSpec(exposure="EXP", folder=str(folder), spid=1, planid="EXP")
    files = input_files(spec)
    result = tmp_path / "result.parquet"
    result.write_bytes(b"x")
    fp = settings_fingerprint({"weights_sha256": "a"}, {"threads": 1})
    record = {"status": "ok", "fingerprint": fp, "inputs": input_checksums(files)}

    assert can_skip(record, result, fp, input_checksums(files))
    assert not can_skip(None, result, fp, input_checksums(files))
    assert not can_skip({**record, "status": "failed"}, result, fp, input_checksums(files))
    assert not can_skip(record, tmp_path / "gone.parquet", fp, input_checksums(files))
    other = settings_fingerprint({"weights_sha256": "b"}, {"threads": 1})
    assert not can_skip(record, result, other, input_checksums(files))
    # same size, new content: the SHA-256 notices it
    sci = next(p for p in files if p.name.startswith("ro-01r"))
    st = sci.stat()
    sci.write_bytes(bytes(reversed(sci.read_bytes())))
    os.utime(sci, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not can_skip(record, result, fp, input_checksums(files))
    # ... while the size+mtime shortcut (--trust-mtime) cannot, by design
    stats = {k: {"size": v["size"], "mtime_ns": v["mtime_ns"]} for k, v in input_checksums(files).items()}
    assert can_skip(record, result, fp, stats, by="stat")
    # an added or removed input is a change
    _touch(folder, "rb-01b-EXP-10010-9.fit")
    assert not can_skip(record, result, fp, input_checksums(input_files(spec)))


def test_night_configs_give_each_exposure_its_own_plan_seed_and_time():
    from drcnet.simulate.exposure import ExposureConfig, night_configs

    cfgs = night_configs(ExposureConfig(seed=5, spectrographs=2), 3)
    assert [c.planid for c in cfgs] == ["SIM00005", "SIM00006", "SIM00007"]
    assert [c.seed for c in cfgs] == [5, 6, 7]
    assert len({c.mjd for c in cfgs}) == 3 and all(c.spectrographs == 2 for c in cfgs)
    named = night_configs(ExposureConfig(seed=0, planid="HD1234"), 2)
    assert [c.planid for c in named] == ["HD1234001", "HD1234002"]
    with pytest.raises(ValueError):
        night_configs(ExposureConfig(), 0)


# -- integration: 2 exposures x 2 spectrographs on a LocalCluster -----------------------------------------
def _second_spectrograph(tmp_path_factory, data_root: Path) -> Path:
    """Spectrograph 2 of the shared plate (seed 7), simulated once per session under a lock."""
    from drcnet.simulate.exposure import ExposureConfig, simulate_exposure

    root = shared_root(tmp_path_factory)
    folder = root / "night_sp02"
    with open(root / "night_sp02.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (folder / "DONE").exists():
                if folder.exists():
                    shutil.rmtree(folder)
                simulate_exposure(
                    ExposureConfig(seed=SEED, spectrographs=2),
                    templates(data_root),
                    folder,
                    data_root=data_root,
                    workers=2,
                    spids=[2],
                )
                (folder / "DONE").write_text("ok\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


@pytest.fixture(scope="module")
def night(tmp_path_factory, data_root):
    """The night root: A (both spectrographs good), B (spectrograph 2's red science frame truncated)."""
    sp1 = full_exposure(tmp_path_factory, data_root)
    sp2 = _second_spectrograph(tmp_path_factory, data_root)
    root = tmp_path_factory.mktemp("night") / "root"
    for name in ("A", "B"):
        linked_copy(sp1, root / name, skip=("DONE",))
        linked_copy(sp2, root / name, skip=("DONE",))
    bad = next((root / "B").glob("ro-02r-*.fit*"))
    good = bad.resolve()
    bad.unlink()
    with open(good, "rb") as f:
        bad.write_bytes(f.read(os.path.getsize(good) // 3))
    return {"root": root, "bad": bad, "good": good, "sp1": sp1, "sp2": sp2}


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _object_fibers(folder: Path, spid: int) -> set[int]:
    from drcnet.instrument.fibermap import read_fibermap

    fm = read_fibermap(next(folder.glob(f"fibermap-*-sp{spid:02d}.fits")), spid=spid)
    return {int(f) for f in np.asarray(fm.fiber)[fm.is_object]}


def _by_id(result_or_manifest) -> dict[str, dict]:
    tasks = result_or_manifest["tasks"] if isinstance(result_or_manifest, dict) else result_or_manifest.records
    return {t["id"]: t for t in tasks}


@pytest.fixture(scope="module")
def first_run(night, client, data_root, tmp_path_factory):
    from drcnet.workflows.night import classify_night

    out = tmp_path_factory.mktemp("night_out") / "night.parquet"
    return classify_night(night["root"], out, client=client, data_root=data_root)


@pytest.mark.slow
def test_first_run_catalogues_every_good_fiber_and_names_the_bad_spectrograph(first_run, night):
    import pyarrow.parquet as pq
    from astropy.io import fits

    res = first_run
    tasks = _by_id(res)
    assert sorted(tasks) == ["A/sp01", "A/sp02", "B/sp01", "B/sp02"]
    assert {k: t["status"] for k, t in tasks.items()} == {
        "A/sp01": "ok",
        "A/sp02": "ok",
        "B/sp01": "ok",
        "B/sp02": "failed",
    }
    assert night["bad"].name in tasks["B/sp02"]["error"]
    assert [r["id"] for r in res.failed] == ["B/sp02"]

    table = pq.read_table(res.catalogue)
    rows = table.select(["exposure", "spid", "fiber"]).to_pylist()
    got: dict[tuple[str, int], set[int]] = {}
    for r in rows:
        got.setdefault((r["exposure"], r["spid"]), set()).add(r["fiber"])
    want = {
        ("A", 1): _object_fibers(night["sp1"], 1),
        ("A", 2): _object_fibers(night["sp2"], 2),
        ("B", 1): _object_fibers(night["sp1"], 1),
    }
    assert got == want
    assert table.num_rows == sum(len(v) for v in want.values()) == res.summary["fibers"]
    assert set(table["pred"].to_pylist()) <= {"F", "G", "K", "other", ""}
    assert set(table["planid"].to_pylist()) == {f"SIM{SEED:05d}"}
    assert json.loads(table.schema.metadata[b"drcnet.provenance"])["git_commit"]

    with fits.open(res.fits) as h:
        assert len(h["CATALOGUE"].data) == table.num_rows
        assert h["CATALOGUE"].header["DRCGIT"]

    manifest = json.loads(res.manifest.read_text())
    assert manifest["provenance"]["config"]["model"]["weights_sha256"]
    m = _by_id(manifest)
    assert m["B/sp02"]["status"] == "failed" and night["bad"].name in m["B/sp02"]["error"]
    for key in ("A/sp01", "A/sp02", "B/sp01"):
        t = m[key]
        assert t["n_fibers"] == len(want[(key[0], int(key[-1]))])
        assert {"checksum", "reduce", "classify", "write"} <= set(t["timings"])
        assert len(t["inputs"]) == 17 and all(len(v["sha256"]) == 64 for v in t["inputs"].values())
        assert Path(t["result"]).is_file() and Path(t["result"]).parent.parent == res.work_dir
    # the model is loaded once per worker, not once per task
    assert 1 <= res.summary["models_loaded"] <= 2
    assert res.summary["ok"] == 3 and res.summary["failed"] == 1


@pytest.mark.slow
def test_rerun_does_no_work_for_finished_tasks_and_redoes_what_failed_or_changed(first_run, night, data_root):
    from typer.testing import CliRunner

    from drcnet.cli import app
    from drcnet.workflows.night import EXIT_TASKS_FAILED, classify_night

    first = _by_id(first_run)
    mtimes = {k: Path(t["result"]).stat().st_mtime_ns for k, t in first.items() if t["status"] == "ok"}

    # second run, through the CLI (its own LocalCluster of 2 thread workers): nothing new to do but the failure
    res = CliRunner().invoke(
        app,
        [
            "night",
            "classify",
            str(night["root"]),
            "--out",
            str(first_run.catalogue),
            "--workers",
            "2",
            "--threads",
            "--data-root",
            str(data_root),
        ],
    )
    assert res.exit_code == EXIT_TASKS_FAILED, res.output
    assert "3 already done, 1 failed" in res.output and "B/sp02" in res.output
    second = _by_id(json.loads(first_run.manifest.read_text()))
    for key, mtime in mtimes.items():
        t = second[key]
        assert t["status"] == "skipped"
        assert "reduce" not in t["timings"] and not t["model_loaded"]
        assert t["produced_by"] == first[key]["night_id"] != t["night_id"]
        assert Path(t["result"]).stat().st_mtime_ns == mtime
    assert second["B/sp02"]["status"] == "failed" and night["bad"].name in second["B/sp02"]["error"]

    # repair the bad frame: only that task is redone, and the catalogue now holds all four spectrographs
    night["bad"].unlink()
    night["bad"].symlink_to(night["good"])
    third = classify_night(night["root"], first_run.catalogue, data_root=data_root, workers=2, processes=False)
    status = {r["id"]: r["status"] for r in third.records}
    assert status == {"A/sp01": "skipped", "A/sp02": "skipped", "B/sp01": "skipped", "B/sp02": "ok"}
    assert third.summary["fibers"] == first_run.summary["fibers"] + len(_object_fibers(night["sp2"], 2))
    assert third.summary["fibers_new"] == len(_object_fibers(night["sp2"], 2))
    assert not third.failed and third.summary["models_loaded"] == 1
