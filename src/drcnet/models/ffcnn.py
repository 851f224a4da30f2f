"""FFCNN (Lu Ya-kun, Qiu Bo, Luo A-li et al. 2022, Spectroscopy and Spectral Analysis 42(6):1881).

Published: two CNN branches (blue, red) working directly on the 2D stripes with fixed 3 x 20
kernels, fusion of the two branches' features, a classifier; Z-score input. Layer counts and
widths are not published; our choices (configurable):

* per branch three ``Conv2d(kernel 3 x 20)`` + ReLU + max-pool stages:
  ``1 -> 8`` (stride 1 x 4, 11 x 3000 -> 11 x 750, pool 1 x 2 -> 11 x 375),
  ``8 -> 16`` (pool 2 x 4 -> 5 x 94), ``16 -> 32`` (pool 5 x 4 -> 1 x 23): 736 features per arm;
* fusion: concatenation of the two branch features (1472);
* classifier: ``Linear(1472, 128) -> ReLU -> Dropout(0.3) -> Linear(128, 3)``.

Fast path (``model.fast``): the same layers on channels-last tensors (oneDNN's fast layout on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from drcnet.models.base import SpectralModel, he_init, init_output_layer
from drcnet.models.registry import register_model


@dataclass
class FFCNNConfig:
    """FFCNN hyper-parameters (kernel 3 x 20 published; the rest chosen).

    Attributes
    ----------
    rows, length, n_classes
        Stripe size (11 x 3000) and number of outputs (F, G, K).
    channels
        Output channels of the three convolution stages per branch.
    kernel
        Convolution kernel (spatial, wavelength): published 3 x 20.
    first_stride
        Wavelength stride of the first convolution.
    pools
        Max-pool (spatial, wavelength) after each stage; the last spatial pool covers all remaining rows.
    hidden
        Width of the hidden classifier layer.
    dropout
        Dropout before the last layer.
    """

    rows: int = 11
    length: int = 3000
    n_classes: int = 3
    channels: tuple[int, int, int] = (8, 16, 32)
    kernel: tuple[int, int] = (3, 20)
    first_stride: int = 4
    pools: tuple[tuple[int, int], ...] = ((1, 2), (2, 4), (5, 4))
    hidden: int = 128
    dropout: float = 0.3


class FFCNNBranch(nn.Module):
    """One arm: ``(B, 1, rows, L)`` -> flat feature vector."""

    def __init__(self, cfg: FFCNNConfig) -> None:
        super().__init__()
        kh, kw = cfg.kernel
        convs = []
        c = 1
        for i, c_out in enumerate(cfg.channels):
            stride = (1, cfg.first_stride) if i == 0 else (1, 1)
            convs.append(nn.Conv2d(c, c_out, (kh, kw), stride=stride, padding=(kh // 2, kw // 2)))
            he_init(convs[-1])
            c = c_out
        self.convs = nn.ModuleList(convs)
        self.pools = [tuple(p) for p in cfg.pools]
        if len(self.pools) != len(convs):
            raise ValueError(f"need one pool per conv stage: {len(convs)} stages, {len(self.pools)} pools")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, pool in zip(self.convs, self.pools):
            x = F.max_pool2d(F.relu(conv(x)), pool)
        return x.reshape(x.shape[0], -1)


@register_model
class FFCNN(SpectralModel):
    """Two-branch 2D CNN on ``(B, 2, 11, 3000)`` Z-scored stripes -> logits."""

    name = "ffcnn"
    input_kind = "stripes"
    Config = FFCNNConfig

    def __init__(self, config: FFCNNConfig | None = None) -> None:
        config = config or FFCNNConfig()
        super().__init__(config)
        self.branches = nn.ModuleList(FFCNNBranch(config) for _ in range(2))
        with torch.no_grad():
            n_feat = self.branches[0](torch.zeros(1, 1, config.rows, config.length)).shape[1]
        self.n_features = n_feat
        self.classifier = nn.Sequential(
            nn.Linear(2 * n_feat, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.n_classes),
        )
        he_init(self.classifier[0])
        init_output_layer(cast(nn.Linear, self.classifier[-1]))
        self.fast = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 2, rows, length)`` -> logits."""
        if x.ndim != 4 or x.shape[1] != 2:
            raise ValueError(f"FFCNN expects (B, 2, rows, length) stripes, got {tuple(x.shape)}")
        feats = []
        for a, branch in enumerate(self.branches):
            xa = x[:, a : a + 1]
            if self.fast:
                xa = xa.contiguous(memory_format=torch.channels_last)
            feats.append(branch(xa))
        return self.classifier(torch.cat(feats, dim=1))
