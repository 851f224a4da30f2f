"""Export a training run as the pretrained model shipped in ``src/drcnet/pretrained/<name>/``.

See :func:`drcnet.train.export.export_run` (float16 weights, JSON files without machine paths,
``EXPORT.json`` provenance).

Usage::

    .venv/bin/python scripts/export_pretrained.py RUN_DIR --name drcnet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drcnet.train.export import export_run

TARGET = Path(__file__).resolve().parents[1] / "src" / "drcnet" / "pretrained"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", default="drcnet")
    args = parser.parse_args()
    out = export_run(args.run_dir, TARGET / args.name)
    print(f"exported {args.run_dir} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
