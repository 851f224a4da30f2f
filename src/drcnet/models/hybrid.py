"""The hybrid: DRC-Net on the raw 2D stripes and RC-Net on the extracted 1D spectrum, read together.

Issue 21 asked for a model that reads what a 2D model sees and what the 1D extraction knows at once: the
1D spectrum is made with the fiber's own spatial profile and trace from the flat and has the sky of the
exposure's sky fibers subtracted, which the stripe of one fiber cannot show. :class:`HybridNet` holds one
network of each kind:

* ``net2d``: a :class:`~drcnet.models.drcnet.DRCNet` on rows 0-10 of the input (the Z-scored stripes),
  with its catalogue heads (subclass, luminosity class, Teff/log g/[Fe/H]): those outputs are the 2D
  network's;
* ``net1d``: an :class:`~drcnet.models.rcnet.RCNet` on row 11 (the Z-scored sky-subtracted 1D spectrum of
  each arm, blue then red, exactly the ``spectra1d`` input);

and answers with the **mixture of their class probabilities**, ``p = w p_2d + (1 - w) p_1d``, the weight
``w = sigmoid(mix)`` learnt with the rest (``mix_init`` sets where it starts; 0.5 is the plain mean). The
logits are ``log p`` plus, per object, ``w E_2d + (1 - w) E_1d`` with ``E = logsumexp(logits)`` of each
network: the softmax is the mixture exactly, and the energy OOD score (:mod:`drcnet.calibration`) is the
mixture of the networks' energies instead of a constant 0. A
mixture keeps each network's calibration and lets either be warm-started from its own trained run
(``drcnet train --model hybrid --init-from 2D_RUN,1D_RUN``, :func:`drcnet.train.warm_start.warm_start`).
In training each network's own logits (and DRC-Net's per-arm heads) are returned in :attr:`aux_logits`, so
the ``aux_weight`` cross-entropy keeps both able to classify alone.

Input (``input_kind = "hybrid"``, :func:`drcnet.data.normalize.prepare_input`): ``(B, 2, 12, 3000)``,
arm 0 blue, 1 red; rows 0-10 the stripe, row 11 the 1D spectrum of that arm (the boxcar sum ``flux1d``;
:class:`HybridOptimalNet`, input kind ``"hybrid_optimal"``, reads the optimal extraction ``flux1d_opt``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from drcnet.models.base import InputKind, SpectralModel, config_from_dict
from drcnet.models.drcnet import DRCNet, DRCNetConfig
from drcnet.models.rcnet import RCNet, RCNetConfig
from drcnet.models.registry import register_model

HYBRID_ROWS = 12
"""Rows per arm of the hybrid input: the 11 stripe rows and one row holding the arm's 1D spectrum."""

_FIXED = frozenset({"n_classes", "rows", "length"})
"""Options of the two networks' configs that the hybrid sets itself."""


@dataclass
class HybridConfig:
    """Configuration of :class:`HybridNet`.

    Attributes
    ----------
    n_classes
        Classes of both networks and of the answer (3: F, G, K; 4: with ``other``).
    drcnet, rcnet
        Overrides of :class:`~drcnet.models.drcnet.DRCNetConfig` and :class:`~drcnet.models.rcnet.RCNetConfig`
        (``n_classes``, ``rows`` and ``length`` are set here and may not be overridden).
        :meth:`HybridNet.config_dict` writes them filled (every option of each network), so a run folder
        rebuilds the same networks even after a default of either config changes.
    mix_init
        Starting weight ``w`` of the 2D network's probabilities in the mixture, in (0, 1).
    """

    n_classes: int = 3
    drcnet: dict[str, Any] = field(default_factory=dict)
    rcnet: dict[str, Any] = field(default_factory=dict)
    mix_init: float = 0.5


@register_model
class HybridNet(SpectralModel):
    """DRC-Net (stripes) and RC-Net (1D spectrum) on ``(B, 2, 12, 3000)``, their probabilities mixed -> logits."""

    name = "hybrid"
    input_kind: ClassVar[InputKind] = "hybrid"
    Config = HybridConfig

    def __init__(self, config: HybridConfig | None = None) -> None:
        config = config or HybridConfig()
        super().__init__(config)
        fixed = {"n_classes": config.n_classes}
        for part, given in (("drcnet", config.drcnet), ("rcnet", config.rcnet)):
            clash = sorted(set(given) & _FIXED)
            if clash:
                raise ValueError(f"hybrid {part} config may not set {clash}: they follow from the hybrid input")
        if not 0.0 < config.mix_init < 1.0:
            raise ValueError(f"mix_init must be in (0, 1), got {config.mix_init}")
        self.net2d = DRCNet(config_from_dict(DRCNetConfig, {**config.drcnet, **fixed, "rows": HYBRID_ROWS - 1}))
        self.net1d = RCNet(
            config_from_dict(RCNetConfig, {**config.rcnet, **fixed, "length": 2 * self.net2d.config.length})
        )
        self.mix = nn.Parameter(torch.tensor(math.log(config.mix_init / (1.0 - config.mix_init))))
        self.branch_logits: list[torch.Tensor] | None = None

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict, each network's config filled with every option it used
        (less ``n_classes``, ``rows`` and ``length``, which follow from the hybrid input)."""
        out = super().config_dict()
        for part, net in (("drcnet", self.net2d), ("rcnet", self.net1d)):
            out[part] = {k: v for k, v in net.config_dict().items() if k not in _FIXED}
        return out

    @property
    def aux_logits(self) -> list[torch.Tensor] | None:
        """In training: DRC-Net's per-arm logits (with its ``aux_heads``), then each network's own logits
        (2D, 1D) of the last forward pass; ``None`` in eval mode."""
        if self.branch_logits is None:
            return None
        return [*(self.net2d.aux_logits or []), *self.branch_logits]

    @property
    def has_heads(self) -> bool:
        """Whether DRC-Net (whose heads answer for the hybrid) has catalogue heads."""
        return self.net2d.heads is not None

    @property
    def weight_2d(self) -> float:
        """The current weight ``w`` of the 2D network's probabilities."""
        return float(torch.sigmoid(self.mix.detach()))

    def split_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2, 12, L)`` -> the stripes ``(B, 2, 11, L)`` and the 1D input ``(B, 1, 2 L)``."""
        if x.ndim != 4 or x.shape[1] != 2 or x.shape[2] != HYBRID_ROWS:
            raise ValueError(f"the hybrid expects (B, 2, {HYBRID_ROWS}, length) input, got {tuple(x.shape)}")
        return x[:, :, : HYBRID_ROWS - 1], x[:, :, HYBRID_ROWS - 1].reshape(x.shape[0], 1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 2, 12, L)`` -> logits ``(B, n_classes)`` (log mixture probabilities)."""
        return self.forward_all(x)["logits"]

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output: ``"logits"`` (log of the mixture's probabilities) and DRC-Net's catalogue heads."""
        stripes, spec = self.split_input(x)
        out = self.net2d.forward_all(stripes)
        l2d, l1d = out["logits"], self.net1d(spec)
        self.branch_logits = [l2d, l1d] if self.training else None
        log_w = F.logsigmoid(self.mix)
        log_1mw = F.logsigmoid(-self.mix)
        l2d32, l1d32 = l2d.float(), l1d.float()
        parts = torch.stack([log_w + F.log_softmax(l2d32, 1), log_1mw + F.log_softmax(l1d32, 1)])
        mixed = torch.logsumexp(parts, 0)  # (logaddexp has no ONNX export)
        # a per-object shift leaves the probabilities (and the loss) as they are, and makes the logits' energy
        # -logsumexp the mixture of the two networks' energies, so the energy OOD score keeps its meaning
        w = torch.sigmoid(self.mix)
        shift = w * torch.logsumexp(l2d32, 1) + (1 - w) * torch.logsumexp(l1d32, 1)
        return {**out, "logits": (mixed + shift[:, None]).to(l2d.dtype)}

    def feature_spread(self, x: torch.Tensor) -> list[float]:
        """DRC-Net's per-arm feature spread (:meth:`drcnet.models.DRCNet.feature_spread`) on the stripes."""
        return self.net2d.feature_spread(self.split_input(x)[0])

    @property
    def aux(self) -> nn.ModuleList | None:
        """DRC-Net's per-arm heads (for the training log's per-arm accuracies)."""
        return self.net2d.aux

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """DRC-Net's per-arm features ``(B, 2, feature_dim)`` of the stripes."""
        return self.net2d.features(self.split_input(x)[0])

    def example_input(self, batch: int = 2) -> torch.Tensor:
        """A random ``(batch, 2, 12, length)`` input."""
        return torch.randn(batch, 2, HYBRID_ROWS, self.net2d.config.length)

    def part_prefix(self, model_name: str) -> str | None:
        """Where a trained run of architecture ``model_name`` fits in this model (warm start): ``"net2d."``
        for ``drcnet``, ``"net1d."`` for ``rcnet``, ``""`` (the whole model) for the other hybrid (the same
        networks on the other 1D extraction), else ``None``."""
        return {"drcnet": "net2d.", "rcnet": "net1d.", **dict.fromkeys(HYBRID_MODELS, "")}.get(model_name)


@register_model
class HybridOptimalNet(HybridNet):
    """:class:`HybridNet` whose 1D row is the optimal (Horne 1986) extraction ``flux1d_opt`` (input kind
    ``"hybrid_optimal"``), not the boxcar sum.

    The optimal extraction weights each pixel by the fiber's spatial profile from the flat and by its
    variance and rejects outlying pixels (cosmic rays), so at low S/N_r its spectrum is less noisy than the
    aperture sum (issue 21: RC-Net on optimal spectra was 3.1 points ahead of RC-Net on boxcar spectra below
    S/N_r 10, ``benchmarks/compare_2d_1d``). The networks are the hybrid's: a ``hybrid`` run warm-starts it
    whole (``drcnet train --model hybrid_optimal --init-from drcnet-hybrid``). Dataset files written by
    ``drcnet simulate``, ``simulate-population`` and ``frames reduce`` hold ``flux1d_opt``; the exposure
    path passes the reduction's optimal extraction.
    """

    name = "hybrid_optimal"
    input_kind: ClassVar[InputKind] = "hybrid_optimal"


HYBRID_MODELS = ("hybrid", "hybrid_optimal")
"""The registered hybrids (the same networks; they differ in the 1D extraction they read)."""
