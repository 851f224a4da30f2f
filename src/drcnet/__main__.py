"""``python -m drcnet ...``: the ``drcnet`` command line, e.g. for ``torchrun`` (one process per rank)::

torchrun --standalone --nproc_per_node 2 -m drcnet train --model drcnet --data d.h5 --out runs/x
"""

from drcnet.cli import app

if __name__ == "__main__":
    app(prog_name="drcnet")
