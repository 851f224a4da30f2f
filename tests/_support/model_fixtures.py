"""Shared fixtures for the model/train/evaluate/report tests (import them into a test module).

The dataset is synthetic (:mod:`_support.synthetic_dataset`); to run the same tests on a file from
``drcnet simulate``, point ``DRCNET_TEST_DATA`` at it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from _support.synthetic_dataset import make_synthetic_dataset

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2 on 2 cores: one intra-op thread per worker, or OpenMP threads fight for the cores
    torch.set_num_threads(1)

# 25 train objects (not a multiple of the batch or world size, on purpose), 8 val, 20 test over 4 bins
MICRO_LAYOUT = {"train": (25, 0, 0, 0), "val": (8, 0, 0, 0), "test": (8, 4, 4, 4)}
# a model config small enough for several epochs per test on 2 CPU cores
SMALL_DRCNET = '{"backbone_channels": [4, 4, 8, 8, 8, 8, 16, 16], "fusion_channels": [4, 4], "fc_widths": [32, 16]}'


@pytest.fixture(scope="session")
def micro_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 53-object dataset file (10 % of the test labels unknown)."""
    env = os.environ.get("DRCNET_TEST_DATA")
    if env:
        return Path(env)
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "micro.h5", MICRO_LAYOUT, seed=1, unknown_fraction=0.1
    )


def cli(*args: str) -> str:
    """Run ``drcnet ARGS`` in-process with typer's CliRunner; fail with its output unless exit 0."""
    from typer.testing import CliRunner

    from drcnet.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    if res.exit_code != 0:
        raise AssertionError(
            f"drcnet {' '.join(map(str, args))} exited {res.exit_code}:\n{res.output}\n{res.exception!r}"
        )
    return res.output


@pytest.fixture(scope="session")
def cli_runs(micro_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """DRC-Net (paper architecture) and RC-Net trained 2 epochs each through ``drcnet train``."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name in ("drcnet", "rcnet"):
        out = root / name
        cli(
            "train",
            "--model",
            name,
            "--data",
            micro_data,
            "--out",
            out,
            "--epochs",
            2,
            "--batch-size",
            8,
            "--no-progress",
            "--seed",
            3,
        )
        runs[name] = out
    return runs
