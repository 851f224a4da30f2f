"""The ``drcnet`` command line: thin typer commands over the library functions.

Each group of commands lives in its own module under :mod:`drcnet.commands`
and registers itself on :data:`app` here.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="drcnet",
    help="Classify F/G/K stars straight from raw LAMOST 2D spectra (DRC-Net and baselines).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _main() -> None:
    """drcnet: simulate LAMOST stripes from real spectra, train DRC-Net, RC-Net and FFCNN, evaluate like the paper."""


def _register() -> None:
    # imported for their side effect of adding commands to ``app``
    from drcnet.commands import data_commands  # noqa: F401
    from drcnet.commands import model_commands  # noqa: F401
    from drcnet.commands import frames_commands  # noqa: F401


_register()
