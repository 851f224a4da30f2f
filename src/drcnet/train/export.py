"""Export a training run as a shipped model folder (``drcnet/pretrained/<name>/``).

Copies ``run.json``, ``history.csv``, ``metrics.json`` (and ``MODEL_CARD.md`` when the run has
one), writes the best weights as float16 safetensors (half the size; :func:`drcnet.models.load_run`
loads them into the float32 model, and class probabilities change by < 1e-3) and records the
export's own provenance in ``EXPORT.json``; ``run.json`` records the SHA-256 of the shipped
weights, which :func:`drcnet.models.load_run` checks. Absolute paths of the machine the run was made on are
replaced by their last component in every JSON file, so shipped files name no local folders.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from drcnet.models.run_folder import BEST, EXPORT_JSON, RUN_JSON, file_sha256, read_safetensors
from drcnet.provenance import atomic_path, provenance, write_json_atomic

_ABS_PATH = re.compile(r"^(/|[A-Za-z]:[\\/]|~[/\\])")
JSON_FILES = (RUN_JSON, "metrics.json", "calibration.json")
TEXT_FILES = ("history.csv", "MODEL_CARD.md")


def strip_machine_paths(obj: Any) -> Any:
    """``obj`` with every absolute path string replaced by its last component.

    POSIX (leading ``/``), Windows (drive letter) and home-relative (``~/``) paths are recognised, in
    nested dicts and lists; relative paths and other values are kept as they are.
    """
    if isinstance(obj, dict):
        return {k: strip_machine_paths(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [strip_machine_paths(v) for v in obj]
    if isinstance(obj, str) and _ABS_PATH.match(obj) and "\n" not in obj:
        parts = [p for p in re.split(r"[\\/]", obj) if p]
        return parts[-1] if parts else obj
    return obj


def export_run(run_dir: str | Path, target: str | Path) -> Path:
    """Write the shipped-model folder ``target`` from the run folder ``run_dir``.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` has no ``run.json`` or no ``best.safetensors``.
    """
    run_dir, target = Path(run_dir), Path(target)
    for need in (RUN_JSON, BEST):
        if not (run_dir / need).is_file():
            raise FileNotFoundError(f"{run_dir} has no {need}; export a finished `drcnet train` run folder")
    target.mkdir(parents=True, exist_ok=True)
    for name in JSON_FILES:
        if (run_dir / name).is_file():
            write_json_atomic(target / name, strip_machine_paths(json.loads((run_dir / name).read_text())))
    for name in TEXT_FILES:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, target / name)
    tensors, _ = read_safetensors(run_dir / BEST)
    with safe_open(str(run_dir / BEST), framework="pt", device="cpu") as f:
        raw_meta = f.metadata() or {}  # copied verbatim (model name, config, epoch, val loss)
    half = {k: v.to(torch.float16).contiguous() if v.is_floating_point() else v for k, v in tensors.items()}
    with atomic_path(target / BEST) as tmp:
        save_file(half, str(tmp), metadata=raw_meta)
    run = json.loads((target / RUN_JSON).read_text())
    run["checksums"] = {BEST: file_sha256(target / BEST)}  # the shipped float16 file, checked at every load
    write_json_atomic(target / RUN_JSON, run)
    write_json_atomic(target / EXPORT_JSON, provenance({"source_run": run_dir.name, "weights": "float16"}))
    return target
