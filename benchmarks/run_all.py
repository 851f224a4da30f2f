"""Run every benchmark in turn (``make bench``): simulate, training/inference, raw-exposure speed, nights on Dask.

Each benchmark prints its own numbers, targets and ratios against its plain reference. The
accuracy-consistency benchmark of the raw-exposure path needs a trained run folder and is run by
hand (see ``benchmarks/bench_frames.py accuracy --help``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMANDS = [
    [sys.executable, str(HERE / "bench_simulate.py")],
    [sys.executable, str(HERE / "bench_training.py")],
    [sys.executable, str(HERE / "bench_frames.py"), "speed"],
    [sys.executable, str(HERE / "bench_night.py"), "--quick"],
]


def main() -> int:
    failed = 0
    for cmd in COMMANDS:
        print(f"\n=== {' '.join(Path(c).name if i else 'python' for i, c in enumerate(cmd))}", flush=True)
        failed += subprocess.call(cmd) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
