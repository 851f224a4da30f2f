"""Shared pieces of the model zoo: input kinds and the config-dataclass protocol.

Every model in :mod:`drcnet.models` is a plain :class:`torch.nn.Module` that

* is built from one config dataclass (``Model.Config``), kept on ``model.config``;
* declares the input it needs in the class attribute ``input_kind``:

  - ``"stripes"``: the two raw 2D stripes, tensor ``(B, 2, 11, 3000)`` (arm 0 blue, 1 red),
    each stripe Z-scored on its own (:func:`drcnet.data.normalize.zscore_stripes`);
  - ``"spectra1d"``: the two sky-subtracted 1D spectra ``flux1d - sky1d``, each arm
    Z-scored on its own and the two concatenated along wavelength, tensor ``(B, 1, 6000)``
    (:func:`drcnet.data.normalize.zscore_spectra1d`);
  - ``"hybrid"``: both, each arm's 1D spectrum as a twelfth row under its stripe, ``(B, 2, 12, 3000)``
    (:func:`drcnet.data.normalize.hybrid_input`; :class:`drcnet.models.hybrid.HybridNet`);
  - ``"hybrid_optimal"``: the same with the optimal (Horne) extraction ``flux1d_opt`` as the 1D spectrum
    (:class:`drcnet.models.hybrid.HybridOptimalNet`);

* returns logits ``(B, n_classes)`` (softmax is applied by the caller).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import torch
from torch import nn

InputKind = Literal["stripes", "spectra1d", "hybrid", "hybrid_optimal"]
INPUT_KINDS: tuple[str, ...] = ("stripes", "spectra1d", "hybrid", "hybrid_optimal")


class SpectralModel(nn.Module):
    """Base class: remembers its config and says which input it takes."""

    name: ClassVar[str] = ""
    input_kind: ClassVar[InputKind] = "stripes"
    Config: ClassVar[type]

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output of the network: ``{"logits": (B, n_classes)}`` here; models with catalogue heads
        add theirs (:class:`drcnet.models.heads.StellarHeads`)."""
        return {"logits": self(x)}

    @property
    def has_heads(self) -> bool:
        """Whether the model has catalogue heads (:class:`drcnet.models.heads.StellarHeads`) to train."""
        return getattr(self, "heads", None) is not None

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self.config)

    def example_input(self, batch: int = 2) -> torch.Tensor:
        """A random input of the right shape (for tests and benchmarks)."""
        if self.input_kind == "stripes":
            c = self.config
            return torch.randn(batch, 2, c.rows, c.length)
        return torch.randn(batch, 1, self.config.length)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def config_from_dict(cls: type, values: dict[str, Any] | None) -> Any:
    """Build the dataclass ``cls`` from ``values``, converting lists to tuples and rejecting unknown keys."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown config option(s) {unknown} for {cls.__qualname__}; valid: {sorted(fields)}")
    for key, value in list(values.items()):
        if isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)


def he_init(module: nn.Module, gain_scale: float = 1.0) -> None:
    """He (Kaiming) normal init for a conv/linear layer (fan-in, ReLU gain) times ``gain_scale``, zero bias.

    The published networks have no batch norm; PyTorch's default init shrinks the signal by ~3x per
    layer, so after RC-Net's 24 convolutions every input gives the same output and training stalls
    at chance level. He init keeps the activation scale through the depth.
    """
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        with torch.no_grad():
            module.weight.mul_(gain_scale)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_output_layer(layer: nn.Linear) -> None:
    """Small init for the logits layer so the initial prediction is close to uniform."""
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.zeros_(layer.bias)
