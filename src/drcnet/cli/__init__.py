"""The ``drcnet`` command line: builds the typer app from the command modules.

Each group of commands lives in its own module here (:mod:`drcnet.cli.data`,
:mod:`drcnet.cli.models`, :mod:`drcnet.cli.train`, :mod:`drcnet.cli.frames`) and
exposes ``register(app)``; the command modules never import this one, and no
module of the library imports the CLI.
"""

from __future__ import annotations

import typer

from drcnet.cli import data, frames, models, night

app = typer.Typer(
    name="drcnet",
    help="Classify F/G/K stars straight from raw LAMOST 2D spectra (DRC-Net and baselines).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # plain (click) help: rich-formatted help imports rich, markdown-it and pygments (~110-200 ms of every
    # `drcnet --help`); the text is the same, without boxes
    rich_markup_mode=None,
)


@app.callback()
def _main() -> None:
    """drcnet: simulate LAMOST stripes from real spectra, train DRC-Net, RC-Net and FFCNN, evaluate like the paper."""


for _module in (data, models, frames, night):
    _module.register(app)

__all__ = ["app"]
