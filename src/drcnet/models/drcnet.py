# Over 400 lines on purpose: DRC-Net, its spatial reduction and its registered variants stay in one model file.
"""DRC-Net (Zhang et al. 2023, RAA 23:125005): double-branch residual network on raw 2D stripes.

Per arm (blue, red; separate weights):

1. **Spatial dimension reduction**: three convolutions along the spatial axis with kernels
   5x1, 5x1, 3x1 and no padding, 11 -> 7 -> 3 -> 1 rows (published). Channel counts are not
   published; default ``reduce_channels = (8, 8, 1)``, so the module ends in one 1 x 3000 sequence
   like the paper's figure 6. Activations are not published either: by default the three
   convolutions are linear (a learned "spectral extraction", which is a linear weighted sum of rows;
   ``reduce_activation="relu"`` puts a ReLU after the first two).
2. **Feature extraction**: the RC-Net backbone (:class:`~drcnet.models.rcnet.RCNetBackbone`) on the
   1 x 3000 sequence -> 128-d feature (published).

Then:

3. **Fusion**: the two 128-d features stacked as a 2 x 128 map (arms as input channels) and two
   kernel-3 ("1x3") convolutions with 'same' padding and ReLU; widths not published, default
   ``fusion_channels = (32, 32)``.
4. **Classifier**: three fully connected layers ``32*128 -> 256 -> 64 -> 3`` (widths not published;
   ``fc_widths = (256, 64)``), ReLU between them, optional dropout (default 0: the paper names none),
   softmax applied by the caller on the logits.

Fast path (``model.fast = True``, default): the spatial reduction of both arms is one grouped 1x1
convolution on the rows-as-channels view of the input (the three linear kx1 convolutions composed
into one 11 -> 1 matrix built from the same conv weights; with ReLUs, three banded ones), then the
backbones run on channels-last tensors (:meth:`~drcnet.models.rcnet.ResidualModule.forward_fast`).
Same weights, same result to float rounding as the plain ``nn.Conv2d`` path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from drcnet.models.base import SpectralModel, he_init, init_output_layer
from drcnet.models.heads import StellarHeads
from drcnet.models.rcnet import RCNET_CHANNELS, RCNetBackbone
from drcnet.models.registry import register_model


class SpatialReduction(nn.Module):
    """Convolutions with ``(k, 1)`` kernels, no padding, over the spatial rows of one arm's stripe.

    ``(B, 1, rows, L)`` -> ``(B, channels[-1], L)``. ``sum(k - 1) == rows - 1`` so one row is left.
    """

    def __init__(
        self,
        rows: int = 11,
        channels: tuple[int, ...] = (8, 8, 1),
        kernels: tuple[int, ...] = (5, 5, 3),
        activation: str = "none",
    ) -> None:
        super().__init__()
        if activation not in ("none", "relu"):
            raise ValueError(f"reduce_activation must be 'none' or 'relu', got {activation!r}")
        self.activation = activation
        if len(channels) != len(kernels):
            raise ValueError(f"reduce_channels {channels} and reduce_kernels {kernels} differ in length")
        if rows - sum(k - 1 for k in kernels) != 1:
            raise ValueError(f"kernels {kernels} reduce {rows} rows to {rows - sum(k - 1 for k in kernels)}, not 1")
        convs = []
        c, h = 1, rows
        self.heights: list[tuple[int, int]] = []
        for c_out, k in zip(channels, kernels):
            convs.append(nn.Conv2d(c, c_out, (k, 1)))
            # He gain where a ReLU follows; variance-preserving (gain 1) for linear layers
            he_init(convs[-1], 1.0 if (activation == "relu" and len(convs) < len(kernels)) else 0.5**0.5)
            self.heights.append((h, h - k + 1))
            c, h = c_out, h - k + 1
        self.convs = nn.ModuleList(convs)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain path: ``(B, 1, rows, L)`` -> ``(B, C, L)``."""
        n = len(self.convs)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < n - 1 and self.activation == "relu":
                x = F.relu(x)
        return x.squeeze(2)

    def banded(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each conv as a ``(rows_in * c_in, rows_out * c_out)`` matrix and a bias (row-major, channel-minor).

        ``E[(r + j) * c_in + ci, r * c_out + co] = W[co, ci, j, 0]``; differentiable in the conv weights.
        """
        out = []
        for conv, (h_in, h_out) in zip(cast("list[nn.Conv2d]", self.convs), self.heights):
            w = conv.weight[..., 0].permute(2, 1, 0)  # (k, c_in, c_out)
            k, c_in, c_out = w.shape
            bands = [F.pad(w, (0, 0, 0, 0, r, h_in - k - r)) for r in range(h_out)]  # each (h_in, c_in, c_out)
            e = torch.stack(bands, dim=2).reshape(h_in * c_in, h_out * c_out)
            out.append((e, conv.bias.repeat(h_out)))  # type: ignore[union-attr]  # (the convs have a bias)
        return out

    def composed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole (linear) reduction as one ``(rows, c_out)`` matrix and bias: ``y = x @ E + b`` per column.

        Only valid without activations (``activation == "none"``); the product of the banded matrices.
        """
        if self.activation != "none":
            raise ValueError("the reduction has activations; it is not one linear map")
        mats = self.banded()
        e, b = mats[0]
        for e_i, b_i in mats[1:]:
            b = b @ e_i + b_i
            e = e @ e_i
        return e, b


def reduce_arms_fast(reductions: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """Fast spatial reduction of all arms: ``(B, A, rows, L)`` -> A tensors ``(B, C, 1, L)`` (channels-last).

    Works on the rows-as-channels view ``x.view(B, A * rows, 1, L)`` (no transpose), one grouped
    ``1 x 1`` convolution per layer for all arms (a group per arm). Linear reductions (the default)
    are first composed into one ``rows -> C`` matrix (:meth:`SpatialReduction.composed`), so the three
    convolutions cost one small matrix product per column; with ReLUs each ``(k, 1)`` convolution is
    applied as its banded matrix (:meth:`SpatialReduction.banded`). Same result as the plain path.
    """
    n_arms = len(reductions)
    reds = cast("list[SpatialReduction]", reductions)
    b, a, rows, length = x.shape
    h = x.reshape(b, a * rows, 1, length)
    if all(r.activation == "none" for r in reds):
        layers = [[r.composed() for r in reds]]
    else:
        per_arm = [r.banded() for r in reds]
        layers = [[m[i] for m in per_arm] for i in range(len(per_arm[0]))]
    for i, layer in enumerate(layers):
        w = torch.cat([e.t() for e, _ in layer])[:, :, None, None]  # (A * out, in, 1, 1)
        bias = torch.cat([bb for _, bb in layer])
        h = F.conv2d(h, w, bias, groups=n_arms)
        if i < len(layers) - 1:
            h = h.relu_()
    c = h.shape[1] // n_arms
    return [h[:, k * c : (k + 1) * c].contiguous(memory_format=torch.channels_last) for k in range(n_arms)]


@dataclass
class DRCNetConfig:
    """DRC-Net hyper-parameters. Published: kernels, 11 -> 1 rows, RC-Net backbone, 128-d feature,
    two 1x3 fusion convolutions, three FC layers. Chosen (not published): all widths below.

    Attributes
    ----------
    rows, length
        Stripe size (11 x 3000).
    n_classes
        Outputs (F, G, K).
    reduce_channels, reduce_kernels
        Spatial reduction convolutions (kernels published 5, 5, 3; channels chosen 8, 8, 1).
    reduce_activation
        ``"none"`` (chosen): the three convolutions are linear, a learned extraction profile like
        the aperture/optimal extraction they stand in for, and fuse into one ``11 -> 1`` map in the
        fast path; ``"relu"``: a ReLU after the first two.
    backbone_channels, kernel, feature_dim
        RC-Net backbone (published).
    fusion_channels
        The two kernel-3 fusion convolutions (chosen 32, 32).
    fc_widths
        Hidden widths of the three-layer classifier (chosen 256, 64).
    dropout
        Dropout before each hidden FC layer (chosen 0.0; the paper names none).
    reduce_init
        ``"random"`` (He init, the original) or ``"profile"``: the chain of first channels of the three
        reduction convolutions starts as an extraction profile (:func:`profile_init`). With random init
        the composed 11-row map starts nearly orthogonal to the fiber profile in 10 % of draws
        (|cos| < 0.05; median 0.25); the shipped red branch ended at |cos| 0.054, i.e. it rejected the
        fiber's light and passed only noise (red feature std 0.03 vs blue 3.6 over objects).
    aux_heads
        Add a linear classifier on each arm's 128-d feature; training adds their cross-entropy
        (``TrainConfig.aux_weight``), so each branch must carry class information on its own and cannot
        be starved by the other arm.
    seq_norm
        ``"none"`` or ``"batch"``: standardise each wavelength pixel of the reduced 1 x 3000 sequence over
        the batch (``BatchNorm1d(length)``, no affine; running statistics at inference). Sky emission
        lines sit at the same pixels in every object and their strength varies with the sky, not the
        star: per pixel they are brought to unit spread like every other pixel instead of dominating.
    feature_norm
        ``"none"`` or ``"batch"``: batch-normalise each arm's 128-d feature before its ReLU, so no unit
        can be constant over objects or dead (the shipped red branch: 27 % dead units, the rest
        constant to 0.03).
    arm_dropout
        Training only: probability per object of replacing one arm's (Z-scored) stripe by unit-normal
        noise (default 0: the fusion then learns to ignore a noisy arm, which the arm-ablation check
        must not see).
    heads
        Add the catalogue heads (:class:`~drcnet.models.heads.StellarHeads`) on the classifier's first
        hidden layer: subclass on LAMOST's grid, luminosity class, and Teff, log g, [Fe/H] each with an
        uncertainty (:meth:`DRCNet.forward_all`).
    arm_feature_dropout
        Training only: probability per object of zeroing one arm's 128-d feature before the fusion
        (modality dropout; the arm is drawn blue or red with equal odds). The fusion then has to
        classify from either arm alone part of the time, so it cannot settle on one arm and leave
        the other's branch without gradient (the collapse measured in ``docs/notes_real_stars.md``).
        Unlike ``arm_dropout`` the dropped arm carries no signal at all, so nothing teaches the
        fusion that a noisy stripe is normal.
    """

    rows: int = 11
    length: int = 3000
    n_classes: int = 3
    reduce_channels: tuple[int, ...] = (8, 8, 1)
    reduce_kernels: tuple[int, ...] = (5, 5, 3)
    reduce_activation: str = "none"
    backbone_channels: tuple[int, ...] = RCNET_CHANNELS
    kernel: int = 3
    feature_dim: int = 128
    fusion_channels: tuple[int, int] = (32, 32)
    fc_widths: tuple[int, int] = (256, 64)
    dropout: float = 0.0
    reduce_init: str = "random"
    aux_heads: bool = False
    arm_dropout: float = 0.0
    seq_norm: str = "none"
    feature_norm: str = "none"
    heads: bool = False
    arm_feature_dropout: float = 0.0


def profile_init(red: SpatialReduction, fwhm_px: float = 6.0, others: float = 0.1) -> None:
    """Start a reduction as an extraction profile: composed map ~ a Gaussian of ``fwhm_px`` over the rows.

    Channel 0 of each convolution (from channel 0 of the previous one) gets a normalised Gaussian
    kernel whose variances add up to the profile's (6 px FWHM, the forward model's core), scaled so
    the composed map sums to 1 (an average over the fiber's rows, like a normalised optimal
    extraction); all other weights are kept at ``others`` x their He init so they can still grow.
    """
    sigma2 = (fwhm_px / 2.3548200450309493) ** 2
    convs = cast("list[nn.Conv2d]", red.convs)
    ks = [conv.kernel_size[0] for conv in convs]
    share = [max(k - 1, 1) ** 2 for k in ks]
    with torch.no_grad():
        for conv, k, sh in zip(convs, ks, share):
            conv.weight.mul_(others)
            conv.bias.zero_()  # type: ignore[union-attr]  # (the convs have a bias)
            x = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
            var = sigma2 * sh / sum(share)
            g = torch.exp(-0.5 * x**2 / var)
            conv.weight[0, 0, :, 0] = g / g.sum()


@register_model
class DRCNet(SpectralModel):
    """DRC-Net on ``(B, 2, 11, 3000)`` Z-scored stripes -> logits ``(B, n_classes)``."""

    name = "drcnet"
    input_kind = "stripes"
    Config = DRCNetConfig
    n_arms = 2

    def __init__(self, config: DRCNetConfig | None = None) -> None:
        config = config or DRCNetConfig()
        super().__init__(config)
        c = config
        self.reduce = nn.ModuleList(
            SpatialReduction(c.rows, tuple(c.reduce_channels), tuple(c.reduce_kernels), c.reduce_activation)
            for _ in range(self.n_arms)
        )
        c_red = cast(SpatialReduction, self.reduce[0]).out_channels
        self.backbones = nn.ModuleList(
            RCNetBackbone(c_red, c.length, tuple(c.backbone_channels), c.kernel, c.feature_dim)
            for _ in range(self.n_arms)
        )
        f1, f2 = c.fusion_channels
        self.fusion = nn.Sequential(
            nn.Conv1d(self.n_arms, f1, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(f1, f2, 3, padding=1),
            nn.ReLU(),
        )
        h1, h2 = c.fc_widths
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(c.dropout),
            nn.Linear(f2 * c.feature_dim, h1),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Linear(h2, c.n_classes),
        )
        for m in list(self.fusion) + list(self.classifier)[:-1]:
            he_init(m)
        init_output_layer(cast(nn.Linear, self.classifier[-1]))
        if c.reduce_init == "profile":
            for red in cast("list[SpatialReduction]", self.reduce):
                profile_init(red)
        elif c.reduce_init != "random":
            raise ValueError(f"reduce_init must be 'random' or 'profile', got {c.reduce_init!r}")
        self.aux = None
        if c.aux_heads:
            self.aux = nn.ModuleList(nn.Linear(c.feature_dim, c.n_classes) for _ in range(self.n_arms))
            for head in cast("list[nn.Linear]", self.aux):
                init_output_layer(head)
        self.aux_logits: list[torch.Tensor] | None = None
        for name, value in (("seq_norm", c.seq_norm), ("feature_norm", c.feature_norm)):
            if value not in ("none", "batch"):
                raise ValueError(f"{name} must be 'none' or 'batch', got {value!r}")
        self.seq_bn = (
            nn.ModuleList(nn.BatchNorm1d(c.length, affine=False) for _ in range(self.n_arms))
            if c.seq_norm == "batch"
            else None
        )
        self.feat_bn = (
            nn.ModuleList(nn.BatchNorm1d(c.feature_dim) for _ in range(self.n_arms))
            if c.feature_norm == "batch"
            else None
        )
        self.heads = StellarHeads(h1) if c.heads else None
        if not 0.0 <= c.arm_feature_dropout < 1.0:
            raise ValueError(f"arm_feature_dropout must be in [0, 1), got {c.arm_feature_dropout}")
        self.fast = True

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-arm 128-d features stacked: ``(B, 2, feature_dim)``."""
        if x.ndim != 4 or x.shape[1] != self.n_arms:
            raise ValueError(f"DRC-Net expects (B, {self.n_arms}, rows, length) stripes, got {tuple(x.shape)}")
        backbones = cast("list[RCNetBackbone]", self.backbones)
        if self.seq_bn is None and self.feat_bn is None:
            if self.fast:
                per_arm = reduce_arms_fast(self.reduce, x)  # per arm (B, C, 1, L) channels-last
                feats = [bb.forward_fast(per_arm[a]) for a, bb in enumerate(backbones)]
            else:
                feats = [bb(red(x[:, a : a + 1])) for a, (red, bb) in enumerate(zip(self.reduce, self.backbones))]
            return torch.stack(feats, dim=1)
        b = x.shape[0]
        if self.fast:
            hs = reduce_arms_fast(self.reduce, x)
        else:
            hs = [red(x[:, a : a + 1]) for a, red in enumerate(self.reduce)]
        feats = []
        for a, bb in enumerate(backbones):
            h = hs[a]
            if self.seq_bn is not None:
                shape = h.shape
                h = self.seq_bn[a](h.reshape(b * shape[1], -1)).reshape(shape)
                if self.fast:
                    h = h.contiguous(memory_format=torch.channels_last)
            for m in bb.blocks:
                h = m.forward_fast(h) if self.fast else m(h)  # type: ignore[operator]  # (ModuleList items: Module)
            pre = bb.fc(h.reshape(b, -1) if self.fast else h.flatten(1))
            if self.feat_bn is not None:
                pre = self.feat_bn[a](pre)
            feats.append(F.relu(pre))
        return torch.stack(feats, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 2, rows, length)`` -> logits.

        In training mode with ``aux_heads`` the per-arm logits are left in ``self.aux_logits``.
        """
        return self.forward_all(x)["logits"]

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: ``(B, 2, rows, length)`` -> every output of the network.

        Returns
        -------
        dict of torch.Tensor
            ``"logits"`` ``(B, n_classes)`` always; with ``heads`` also the outputs of
            :meth:`drcnet.models.heads.StellarHeads.forward` (``subclass_logits``, ``lum_logits``,
            ``params_mean``, ``params_sigma``).
        """
        p = self.config.arm_dropout
        if self.training and p > 0:
            drop = torch.rand(x.shape[0], device=x.device) < p
            arm = torch.randint(0, self.n_arms, (x.shape[0],), device=x.device)
            mask = torch.zeros(x.shape[0], self.n_arms, 1, 1, dtype=torch.bool, device=x.device)
            mask[drop, arm[drop]] = True
            x = torch.where(mask, torch.randn_like(x), x)
        f = self.features(x)
        if self.aux is not None and self.training:
            self.aux_logits = [head(f[:, a]) for a, head in enumerate(self.aux)]
        else:
            self.aux_logits = None
        q = self.config.arm_feature_dropout
        if self.training and q > 0:
            drop = torch.rand(f.shape[0], device=f.device) < q
            arm = torch.randint(0, self.n_arms, (f.shape[0],), device=f.device)
            keep = torch.ones(f.shape[0], self.n_arms, 1, dtype=f.dtype, device=f.device)
            keep[drop, arm[drop]] = 0.0
            f = f * keep
        hidden = self.classifier[:4](self.fusion(f))  # Flatten, Dropout, Linear, ReLU: the first hidden layer
        out = {"logits": self.classifier[4:](hidden)}
        if self.heads is not None:
            out.update(self.heads(hidden))
        return out

    @torch.no_grad()
    def feature_spread(self, x: torch.Tensor) -> list[float]:
        """Per arm: the std over objects of each 128-d feature unit, averaged over units.

        A branch whose value is ~0 while the other's is O(1) has collapsed (shipped model on PyHammer
        stripes: blue 3.65, red 0.030).
        """
        f = self.features(x)
        return [float(f[:, a].std(0).mean()) for a in range(self.n_arms)]
