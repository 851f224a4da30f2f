"""Export a training run as the pretrained model shipped in ``src/drcnet/pretrained/<name>/``.

Copies ``run.json``, ``history.csv`` and ``metrics.json`` and writes the best weights as float16
safetensors (half the size; ``drcnet.models.load_run`` loads them into the float32 model, and the
class probabilities change by < 1e-3), with the export's own provenance in ``EXPORT.json``.

Usage::

    .venv/bin/python scripts/export_pretrained.py RUN_DIR --name drcnet
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from drcnet.provenance import provenance, write_json_atomic
from drcnet.models.run_folder import read_safetensors

TARGET = Path(__file__).resolve().parents[1] / "src" / "drcnet" / "pretrained"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", default="drcnet")
    args = parser.parse_args()
    out = TARGET / args.name
    out.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "history.csv", "metrics.json"):
        if (args.run_dir / name).is_file():
            shutil.copyfile(args.run_dir / name, out / name)
    src = args.run_dir / "best.safetensors"
    tensors, _ = read_safetensors(src)
    with safe_open(str(src), framework="pt", device="cpu") as f:
        raw_meta = f.metadata() or {}  # copied verbatim
    half = {k: v.to(torch.float16).contiguous() if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(half, str(out / "best.safetensors"), metadata=raw_meta)
    write_json_atomic(out / "EXPORT.json", provenance({"source_run": str(args.run_dir), "weights": "float16"}))
    print(f"exported {args.run_dir} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
