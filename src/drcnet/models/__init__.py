"""Model zoo: a registry of plain ``nn.Module`` classifiers, one file per model.

>>> from drcnet.models import create_model, list_models, load_run
>>> list_models()
['drcnet', 'ffcnn', 'hybrid', 'hybrid_optimal', 'rcnet']
>>> model = create_model("drcnet", fc_widths=(128, 32))
>>> model.input_kind
'stripes'

Each model class registers itself where it is defined (``@register_model``), has a config
dataclass (``Model.Config``), keeps it on ``model.config``, declares ``input_kind``
(``"stripes"``: ``(B, 2, 11, 3000)``; ``"spectra1d"``: ``(B, 1, 6000)``; ``"hybrid"`` and ``"hybrid_optimal"``:
``(B, 2, 12, 3000)``; see
:mod:`drcnet.models.base`) and returns logits over :data:`drcnet.conventions.CLASSES`.
``model.fast`` (default ``True``) selects the channels-last CPU fast path, numerically
equivalent to the plain one. :func:`load_run` rebuilds a trained model from its run folder.
This package imports only torch, safetensors and :mod:`drcnet.models` itself.
"""

from __future__ import annotations

# importing the model modules registers them
from drcnet.models.base import INPUT_KINDS, InputKind, SpectralModel
from drcnet.models.drcnet import DRCNet, DRCNetConfig
from drcnet.models.factory import create_model
from drcnet.models.ffcnn import FFCNN, FFCNNConfig
from drcnet.models.hybrid import HybridConfig, HybridNet
from drcnet.models.rcnet import RCNet, RCNetConfig
from drcnet.models.registry import build_model, list_models, model_class, model_input_kind, register_model
from drcnet.models.run_folder import (
    DEFAULT_MODEL,
    RunInfo,
    load_run,
    pretrained_dir,
    read_run,
    resolve_run,
    shipped_models,
)

__all__ = [
    "INPUT_KINDS",
    "InputKind",
    "SpectralModel",
    "DRCNet",
    "DRCNetConfig",
    "RCNet",
    "RCNetConfig",
    "FFCNN",
    "FFCNNConfig",
    "HybridNet",
    "HybridConfig",
    "build_model",
    "create_model",
    "list_models",
    "model_class",
    "model_input_kind",
    "register_model",
    "DEFAULT_MODEL",
    "RunInfo",
    "load_run",
    "pretrained_dir",
    "read_run",
    "resolve_run",
    "shipped_models",
]
