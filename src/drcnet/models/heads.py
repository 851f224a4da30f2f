"""Catalogue heads: subclass, luminosity class and stellar parameters with uncertainties.

The LAMOST 1D pipeline gives class, subclass and LASP Teff/log g/[Fe/H]; a survey catalogue built from
raw stripes needs the same. :class:`StellarHeads` sits on a hidden layer of the classifier (DRC-Net's
first fully connected layer) and outputs

* ``subclass_logits`` ``(B, 24)``: LAMOST's F/G/K grid, :data:`drcnet.conventions.SUBCLASSES`;
* ``lum_logits`` ``(B, 2)``: dwarf / giant (:data:`drcnet.conventions.LUM_CLASSES`, log g 3.5 split);
* ``params_mean`` and ``params_sigma`` ``(B, 3)``: Teff (K), log g (dex), [Fe/H] (dex), each a Gaussian
  mean and standard deviation in physical units.

Uncertainties are **heteroscedastic**: the network predicts a mean and a log variance per object and
is trained with the Gaussian negative log-likelihood (Nix & Weigend 1994; Kendall & Gal 2017), so the
error grows where the data are poor (low S/N, a collapsed arm) without training an ensemble, which
a 2-core machine cannot afford five times over. :func:`heads_loss` masks every missing label (NaN
parameter, subclass -1, luminosity class -1) so an object without LASP parameters still teaches the
class, and an ``other`` object teaches none of the F/G/K heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from drcnet.conventions import LUM_CLASSES, STELLAR_PARAMS, SUBCLASSES
from drcnet.models.base import he_init, init_output_layer

PARAM_CENTER: tuple[float, float, float] = (5500.0, 4.0, -0.3)
"""Centre of each parameter's normalised scale: Teff (K), log g (dex), [Fe/H] (dex); about the middle
of LAMOST's F/G/K sample."""
PARAM_SCALE: tuple[float, float, float] = (800.0, 1.0, 0.5)
"""Unit of each normalised parameter: roughly the spread of LAMOST's F/G/K sample."""
LOG_VAR_RANGE: tuple[float, float] = (-9.0, 4.0)
"""Clamp of the predicted log variance (normalised units): sigma from 0.011 to 7.4 units."""


class StellarHeads(nn.Module):
    """``(B, width)`` hidden features -> subclass, luminosity-class and parameter outputs.

    One shared ``width -> 128`` ReLU layer, then one linear layer giving 24 subclass logits, 2
    luminosity logits, 3 normalised means and 3 log variances.
    """

    center: torch.Tensor  # buffers (register_buffer): the parameters' normalisation
    scale: torch.Tensor

    def __init__(self, width: int, hidden: int = 128) -> None:
        super().__init__()
        self.n_sub, self.n_lum, self.n_par = len(SUBCLASSES), len(LUM_CLASSES), len(STELLAR_PARAMS)
        self.body = nn.Sequential(nn.Linear(width, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, self.n_sub + self.n_lum + 2 * self.n_par)
        he_init(self.body[0])
        init_output_layer(self.out)
        self.register_buffer("center", torch.tensor(PARAM_CENTER), persistent=False)
        self.register_buffer("scale", torch.tensor(PARAM_SCALE), persistent=False)

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs in physical units (see the module docstring); ``params_logvar_n`` is the normalised
        log variance the loss uses."""
        z = self.out(self.body(h))
        a, b = self.n_sub, self.n_sub + self.n_lum
        mean_n = z[:, b : b + self.n_par]
        logvar_n = z[:, b + self.n_par :].clamp(*LOG_VAR_RANGE)
        return {
            "subclass_logits": z[:, :a],
            "lum_logits": z[:, a:b],
            "params_mean": mean_n * self.scale + self.center,
            "params_sigma": torch.exp(0.5 * logvar_n) * self.scale,
            "params_mean_n": mean_n,
            "params_logvar_n": logvar_n,
        }


def normalise_params(params: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` Teff/logg/[Fe/H] in physical units -> the heads' normalised units (NaN stays NaN)."""
    center = torch.tensor(PARAM_CENTER, dtype=params.dtype, device=params.device)
    scale = torch.tensor(PARAM_SCALE, dtype=params.dtype, device=params.device)
    return (params - center) / scale


def heads_loss(
    out: dict[str, torch.Tensor], subclass: torch.Tensor, lum: torch.Tensor, params: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked multi-task loss of the catalogue heads.

    Parameters
    ----------
    out
        :meth:`StellarHeads.forward` outputs for a batch.
    subclass, lum
        ``(B,)`` int64 grid index / luminosity index, -1 where unknown (masked).
    params
        ``(B, 3)`` float Teff (K), log g, [Fe/H]; NaN where unknown (masked per parameter).

    Returns
    -------
    loss, parts
        Sum of the subclass and luminosity cross-entropies and the mean Gaussian negative
        log-likelihood over known parameters (each term the mean over its known labels; a term with no
        known label in the batch is 0), and the terms as floats (``subclass``, ``lum``, ``params``).
    """
    zero = out["subclass_logits"].sum() * 0.0
    terms: dict[str, torch.Tensor] = {}
    known = subclass >= 0
    terms["subclass"] = F.cross_entropy(out["subclass_logits"][known].float(), subclass[known]) if known.any() else zero
    known = lum >= 0
    terms["lum"] = F.cross_entropy(out["lum_logits"][known].float(), lum[known]) if known.any() else zero
    y = normalise_params(params.float())
    known_p = torch.isfinite(y)
    if known_p.any():
        mu, logvar = out["params_mean_n"].float(), out["params_logvar_n"].float()
        nll = 0.5 * (logvar + (torch.nan_to_num(y) - mu) ** 2 * torch.exp(-logvar))
        terms["params"] = nll[known_p].mean()
    else:
        terms["params"] = zero
    total = terms["subclass"] + terms["lum"] + terms["params"]
    return total, {k: float(v.detach()) for k, v in terms.items()}
