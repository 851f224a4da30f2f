"""RC-Net (Zou et al. 2020, PASP 132:044503): residual 1D CNN, and its backbone used by DRC-Net.

Layer facts (REFERENCE.md section 2, after the public MIT reimplementation
``model/rc_net.py`` of qintianjian-lab/Spectrum-Classification-Models):

* 8 residual modules with output channels ``[16, 16, 32, 32, 64, 64, 128, 128]``;
* a module is three ``Conv1d(kernel 3, 'same')`` with ReLU after the first two, plus a
  ``1x1`` shortcut convolution of the module input added to the third, ReLU, ``MaxPool1d(2)``;
* no batch norm, no dropout; head ``flatten -> Linear(128 * floor(L / 256), 128) -> ReLU ->
  Linear(128, n_classes)``. The 128-d hidden layer is the "128-d feature" of DRC-Net.

Two numerically equivalent forward paths exist (see :mod:`drcnet.models.fastpath`):
``plain`` (``nn.Conv1d`` on ``(B, C, L)``) and ``fast`` (the same weights applied as
``(1, 3)`` 2D convolutions on channels-last ``(B, C, 1, L)`` tensors, which oneDNN runs
3-10x faster on CPU). ``model.fast`` picks one; both give the same result to float rounding.

How RC-Net sees the two arms (our choice, the paper does not say): each arm's sky-subtracted
1D spectrum ``flux1d - sky1d`` is Z-scored on its own and the blue and red spectra are
concatenated along wavelength into one ``(1, 6000)`` sequence
(:func:`drcnet.data.normalize.zscore_spectra1d`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from drcnet.models.base import SpectralModel, he_init, init_output_layer
from drcnet.models.registry import register_model

RCNET_CHANNELS: tuple[int, ...] = (16, 16, 32, 32, 64, 64, 128, 128)


class ResidualModule(nn.Module):
    """Three kernel-3 convolutions + 1x1 shortcut, ReLU, max-pool by 2."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd for 'same' padding, got {kernel}")
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, padding=pad)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad)
        self.conv3 = nn.Conv1d(c_out, c_out, kernel, padding=pad)
        self.shortcut = nn.Conv1d(c_in, c_out, 1)
        self.pad = pad
        for conv in (self.conv1, self.conv2):
            he_init(conv)
        # the residual sum of two He-initialised paths would double the variance per module
        he_init(self.conv3, 0.5**0.5)
        he_init(self.shortcut, 0.5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain path: ``x`` is ``(B, C, L)``."""
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y))
        y = F.relu(self.conv3(y) + self.shortcut(x))
        return F.max_pool1d(y, 2)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path: ``x`` is ``(B, C, 1, L)`` in channels-last memory format.

        Same weights as :meth:`forward`; in-place ReLU and residual add (no extra tensors). The
        max-pool by 2 is, without autograd, the maximum of the even and odd columns (no int64 index
        tensor; ~5 % faster inference) and, with autograd, ``max_pool2d`` (its backward is ~20 %
        cheaper than that of ``torch.maximum`` on channels-last tensors).
        """
        p = (0, self.pad)
        y = F.conv2d(x, self.conv1.weight.unsqueeze(2), self.conv1.bias, padding=p).relu_()
        y = F.conv2d(y, self.conv2.weight.unsqueeze(2), self.conv2.bias, padding=p).relu_()
        y = F.conv2d(y, self.conv3.weight.unsqueeze(2), self.conv3.bias, padding=p)
        y += F.conv2d(x, self.shortcut.weight.unsqueeze(2), self.shortcut.bias)
        y = y.relu_()
        if torch.is_grad_enabled():
            return F.max_pool2d(y, (1, 2))
        return pool2_last(y)


def pool2_last(y: torch.Tensor) -> torch.Tensor:
    """Max-pool by 2 along the last axis (floor mode), as ``max(y[..., 0::2], y[..., 1::2])``.

    Equal to ``F.max_pool2d(y, (1, 2))``; faster on CPU because it keeps channels-last and
    computes no argmax indices.
    """
    n = y.shape[-1] // 2 * 2
    return torch.maximum(y[..., 0:n:2], y[..., 1:n:2])


class RCNetBackbone(nn.Module):
    """RC-Net feature extractor: ``(B, c_in, L)`` -> 128-d feature ``(B, feature_dim)``.

    The feature is ``ReLU(Linear(flatten(modules(x))))``, i.e. RC-Net's head without its last layer.
    """

    def __init__(
        self,
        c_in: int = 1,
        length: int = 3000,
        channels: tuple[int, ...] = RCNET_CHANNELS,
        kernel: int = 3,
        feature_dim: int = 128,
    ) -> None:
        super().__init__()
        mods = []
        c = c_in
        for c_out in channels:
            mods.append(ResidualModule(c, c_out, kernel))
            c = c_out
        self.blocks = nn.ModuleList(mods)
        out_len = length
        for _ in channels:
            out_len //= 2
        if out_len < 1:
            raise ValueError(f"length {length} is too short for {len(channels)} pooling stages")
        self.out_len = out_len
        self.out_channels = c
        self.fc = nn.Linear(c * out_len, feature_dim)
        he_init(self.fc)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain path on ``(B, C, L)``."""
        for m in self.blocks:
            x = m(x)
        return F.relu(self.fc(x.flatten(1)))

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path on channels-last ``(B, C, 1, L)``; same result as :meth:`forward`."""
        for m in self.blocks:
            x = m.forward_fast(x)  # type: ignore[operator]  # (ModuleList items are typed Module)
        # (B, C, 1, l) -> (B, C * l) in the plain path's (channel-major) order
        return F.relu(self.fc(x.reshape(x.shape[0], -1)))


def to_channels_last_1d(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, L)`` -> ``(B, C, 1, L)`` in channels-last memory format (one copy at most)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


@dataclass
class RCNetConfig:
    """RC-Net on the concatenated blue+red 1D spectra.

    Attributes
    ----------
    length
        Input length: 2 arms x 3000 wavelength pixels concatenated.
    channels
        Output channels of the 8 residual modules (published).
    kernel
        Convolution kernel (published: 3).
    feature_dim
        Width of the hidden fully connected layer (published: 128).
    n_classes
        Output classes (F, G, K).
    """

    length: int = 6000
    channels: tuple[int, ...] = RCNET_CHANNELS
    kernel: int = 3
    feature_dim: int = 128
    n_classes: int = 3


@register_model
class RCNet(SpectralModel):
    """RC-Net: backbone + ``Linear(128, n_classes)`` on the ``(B, 1, 6000)`` 1D input."""

    name = "rcnet"
    input_kind = "spectra1d"
    Config = RCNetConfig

    def __init__(self, config: RCNetConfig | None = None) -> None:
        config = config or RCNetConfig()
        super().__init__(config)
        self.backbone = RCNetBackbone(1, config.length, tuple(config.channels), config.kernel, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.n_classes)
        init_output_layer(self.head)
        self.fast = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 1, L)`` Z-scored 1D spectra -> logits ``(B, n_classes)``."""
        if self.fast:
            feat = self.backbone.forward_fast(to_channels_last_1d(x))
        else:
            feat = self.backbone(x)
        return self.head(feat)
