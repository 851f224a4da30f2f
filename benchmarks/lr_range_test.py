"""Learning-rate range test (Smith 2017, "Cyclical learning rates", section 3.3) for a drcnet preset.

Not a test and not part of training: a measurement that sets the ``fast`` preset's peak learning rate
(``docs/notes_speed.md`` section 9). From a fresh model it takes ``--steps`` optimiser steps with the
preset's optimiser, batch size and gradient clipping on the training split of a dataset file, the
learning rate rising geometrically from ``--lr-min`` to ``--lr-max``; it prints the exponentially
smoothed training loss (bias-corrected, beta 0.9) against the learning rate and stops early once the
smoothed loss exceeds four times its minimum. It bounds the usable range: from where the loss starts
to fall to where it stops falling (Smith takes the top of that range, just below divergence, as a
one-cycle schedule's peak; a more cautious reading takes about a decade below the lowest loss).
Both are printed; the choice of the peak is then checked by training.

Usage::

    .venv/bin/python benchmarks/lr_range_test.py paper.h5 [--model drcnet] [--preset fast]
        [--steps 150] [--lr-min 1e-6] [--lr-max 1e-1] [--threads 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler

from drcnet.data.torch_dataset import SpectraDataset
from drcnet.models import create_model, model_input_kind
from drcnet.models.fastpath import configure_cpu, set_fast
from drcnet.train.config import PRESETS, TrainConfig
from drcnet.train.optim import build_optimizer


def lr_schedule(lr_min: float, lr_max: float, steps: int) -> np.ndarray:
    """``steps`` learning rates rising geometrically from ``lr_min`` to ``lr_max`` (both included)."""
    return np.geomspace(lr_min, lr_max, steps)


def smoothed(losses: list[float], beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average of ``losses`` (Adam's correction, so early values are not low)."""
    out, avg = np.empty(len(losses)), 0.0
    for i, v in enumerate(losses):
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", default="drcnet")
    ap.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr-min", type=float, default=1e-6)
    ap.add_argument("--lr-max", type=float, default=1e-1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    configure_cpu()
    cfg = TrainConfig(model=a.model, data=str(a.data), out="unused", preset=a.preset).resolved()
    torch.manual_seed(a.seed)
    model = create_model(a.model, **cfg.model_config)
    set_fast(model, True)
    model.train()
    opt = build_optimizer(cfg, model.parameters())
    ds = SpectraDataset(a.data, model_input_kind(a.model), "train", labelled_only=True)
    sampler = RandomSampler(
        ds, replacement=True, num_samples=a.steps * cfg.batch_size, generator=torch.Generator().manual_seed(a.seed)
    )
    loader = DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler)
    lrs = lr_schedule(a.lr_min, a.lr_max, a.steps)
    print(
        f"{a.model}, preset {a.preset}: {cfg.optimizer}, batch {cfg.batch_size}, weight decay "
        f"{cfg.weight_decay}, grad clip {cfg.grad_clip}; {len(ds)} training objects of {a.data.name}"
    )
    losses: list[float] = []
    t0 = time.perf_counter()
    for step, (x, y, *_) in enumerate(loader):
        for g in opt.param_groups:
            g["lr"] = float(lrs[step])
        loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(float(loss))
        s = smoothed(losses)
        if not math.isfinite(losses[-1]) or (step > 10 and s[-1] > 4 * s.min()):
            print(f"stopped at step {step + 1}: smoothed loss {s[-1]:.3f} > 4 x its minimum {s.min():.3f}")
            break
    s = smoothed(losses)
    n = len(s)
    print(f"{n} steps in {time.perf_counter() - t0:.0f} s")
    print(f"{'lr':>10} {'smoothed loss':>14}")
    for i in range(0, n, max(1, n // 25)):
        print(f"{lrs[i]:10.2e} {s[i]:14.4f}")
    best = int(np.argmin(s))
    # steepest descent of the smoothed loss against log10(lr), over the part before the minimum
    g = np.gradient(s[: best + 1], np.log10(lrs[: best + 1])) if best >= 2 else np.array([0.0])
    steep = int(np.argmin(g))
    print(
        f"lowest smoothed loss {s[best]:.4f} at lr {lrs[best]:.2e}; steepest fall at lr {lrs[steep]:.2e}; "
        f"a decade below the lowest loss: {lrs[best] / 10:.2e} (the preset's peak: {cfg.lr:.1e})"
    )


if __name__ == "__main__":
    main()
