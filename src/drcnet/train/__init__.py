"""Training: ``train(TrainConfig)``, presets, checkpoints, exact resume and DDP (see :mod:`drcnet.train.loop`).

>>> from drcnet.train import TrainConfig, train
>>> from drcnet.models import load_run
>>> meta = train(TrainConfig(model="drcnet", data="data.h5", out="runs/drc", preset="fast"))  # doctest: +SKIP
>>> model, info = load_run("runs/drc")  # doctest: +SKIP
"""

from drcnet.train.config import PRESETS, TrainConfig, lr_at
from drcnet.train.loop import steps_per_epoch, train

__all__ = ["PRESETS", "TrainConfig", "lr_at", "train", "steps_per_epoch"]
