"""Start-up stays light (issue 11): the CLI imports its heavy dependencies inside the commands.

Behavioural, not timed: a fresh interpreter imports :mod:`drcnet.cli` (and prints ``--help``) and we
check which modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "h5py", "scipy", "numpy", "pandas", "matplotlib", "pydantic", "astropy", "rich")

PROBE = """
import json, sys
argv = {argv!r}
if argv is None:
    import drcnet.cli
else:
    sys.argv = ["drcnet", *argv]
    from drcnet.cli import app
    try:
        app()
    except SystemExit:
        pass
heavy = {heavy!r}
sys.stderr.write("\\nLOADED=" + json.dumps(sorted(m for m in heavy if m in sys.modules)) + "\\n")
"""


def _loaded(argv: list[str] | None) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = [x for x in proc.stderr.splitlines() if x.startswith("LOADED=")]
    assert line, proc.stderr
    return json.loads(line[-1][len("LOADED=") :])


def test_import_cli_is_light():
    assert _loaded(None) == []


def test_help_is_light():
    assert _loaded(["--help"]) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["frames", "--help"],
        ["night", "--help"],
        ["simulate", "--help"],
        ["train", "--help"],
        ["predict", "--help"],
        ["frames", "reduce", "--help"],
        ["night", "classify", "--help"],
    ],
)
def test_command_help_is_light(argv):
    """A command's help builds its parameters, for which typer itself imports pydantic: nothing else."""
    assert set(_loaded(argv)) <= {"pydantic"}


def test_help_lists_every_command_whole():
    """Plain help lists every command with its whole summary (not cut at ~45 characters)."""
    from typer.testing import CliRunner

    from drcnet.cli import app

    out = CliRunner().invoke(app, ["--help"], terminal_width=100).output
    for name in (
        "simulate",
        "simulate-population",
        "plot-sample",
        "train",
        "evaluate",
        "predict",
        "calibrate",
        "export",
        "report",
        "models",
        "frames",
        "night",
    ):
        assert f"\n  {name} " in out, name
    commands = out[out.index("Commands:") :]
    assert "..." not in commands  # click would cut each summary at ~45 characters
    assert "prob_F/G/K/other" in " ".join(out.split())  # the end of predict's summary line


def test_lazy_console_prints_errors(tmp_path):
    """User errors still come out as one line through the (lazily made) rich console, exit status 2."""
    from typer.testing import CliRunner

    from drcnet.cli import app

    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path), "--preset", "tiny"])
    assert res.exit_code == 2
    assert "error:" in res.output and "is a folder" in res.output
