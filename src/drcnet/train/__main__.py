"""``python -m drcnet.train ...``: the ``drcnet train`` command, for ``torchrun``::

    torchrun --standalone --nproc_per_node 2 -m drcnet.train --model drcnet --data d.h5 --out runs/x
"""

import typer

from drcnet.cli.train import train_cmd


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
    app.command()(train_cmd)
    app()


if __name__ == "__main__":
    main()
