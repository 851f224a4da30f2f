"""Shared pieces for the raw-frame tests (no tests here).

The full-size simulated exposure (one spectrograph, 250 fibers, both arms, 16
raw frames of 4136 x 4160) is made once per test session, even under
pytest-xdist: the workers share one folder and a file lock, and the first one
simulates while the others wait.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import numpy as np

from drcnet.library import load_templates

SEED = 7
SUBCLASSES = ("F2", "F5", "F8", "G0", "G2", "G5", "K0", "K3", "K5")


def templates(data_root: Path) -> list:
    """A small set of PyHammer templates (solar metallicity, 9 subclasses): quick to load."""
    lib = data_root / "spectral_libraries" / "pyhammer"
    files = [lib / f"{s}_+0.0_Dwarf.fits.gz" for s in SUBCLASSES]
    return load_templates([f for f in files if f.exists()]).templates


def shared_root(tmp_path_factory) -> Path:
    """A folder shared by every xdist worker of this session (the session's base temp)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return root


def full_exposure(tmp_path_factory, data_root: Path) -> Path:
    """The session's full-size simulated exposure folder (simulated once, under a lock)."""
    from drcnet.simulate.exposure import ExposureConfig, simulate_exposure

    root = shared_root(tmp_path_factory)
    folder = root / "frames_full_exposure"
    with open(root / "frames_full_exposure.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (folder / "DONE").exists():
                if folder.exists():
                    shutil.rmtree(folder)
                cfg = ExposureConfig(seed=SEED)
                simulate_exposure(cfg, templates(data_root), folder, data_root=data_root, workers=2)
                (folder / "DONE").write_text("ok\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


_REDUCED: dict[str, object] = {}


def clean_reduction(folder: Path, data_root: Path):
    """The reduction of the shared exposure, made once per worker process."""
    from drcnet.reduce.arm import ReduceConfig
    from drcnet.workflows.reduce_exposure import reduce_exposure

    key = str(folder)
    if key not in _REDUCED:
        _REDUCED[key] = reduce_exposure(folder, ReduceConfig(), data_root=data_root)[0]
    return _REDUCED[key]


def linked_copy(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """A folder of symbolic links to ``src``'s files (minus ``skip`` and the DONE marker), to alter cheaply."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.name == "DONE" or p.name in skip:
            continue
        (dst / p.name).symlink_to(p)
    return dst


def one(folder: Path, pattern: str) -> Path:
    """The single file of ``folder`` matching ``pattern``."""
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def replace_with_copy(path: Path) -> Path:
    """Turn a symbolic link into a real copy (so it can be modified)."""
    target = path.resolve()
    path.unlink()
    shutil.copyfile(target, path)
    return path


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))
