"""ONNX export of a model and ONNX Runtime inference.

* :func:`export_onnx` writes a model to an ``.onnx`` file with a dynamic batch axis: ``forward_all``'s
  named outputs where the model has that method (``"logits"`` plus any extra heads, e.g.
  ``"subclass_logits"``, ``"lum_logits"``, ``"params_mean"``, ``"params_sigma"``), else ``forward`` as
  ``"logits"``. The model is exported on its plain path (``fast`` off: the channels-last fast path is a
  CPU-layout optimisation of torch's; ONNX Runtime chooses its own layouts), numerically the same network.
* :class:`OnnxModel` runs such a file with ONNX Runtime and behaves, for :mod:`drcnet.inference.engine`, like the
  torch model (``input_kind``, ``run(x) -> {name: array}``).

``onnx`` and ``onnxruntime`` are imported only here and only when used; without them a clear
:class:`ImportError` says what to install.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from drcnet.provenance import atomic_path

INPUT_NAME = "x"
"""Name of the (normalised) input of every exported model: ``(B, 2, 11, 3000)`` or ``(B, 1, 6000)`` float32."""

META_KEY = "drcnet"
"""Key of the JSON metadata (input kind, output names, model name and config) stored in the ONNX file."""

OPSET = 17


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"ONNX support needs the {module!r} package, which is not installed: pip install onnx onnxruntime"
        ) from err


class _AllOutputs(nn.Module):
    """Wraps a model so that ``forward`` returns ``forward_all``'s outputs as a tuple in a fixed order."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.forward_all(x)  # type: ignore[operator]
        return tuple(out[k] for k in self.names)


def output_names(model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Names of what :func:`export_onnx` exports for ``model``: ``forward_all``'s keys (``"logits"`` first),
    else ``["logits"]``."""
    forward_all = getattr(model, "forward_all", None)
    if not callable(forward_all):
        return ["logits"]
    x = example if example is not None else model.example_input(2)  # type: ignore[operator]
    with torch.inference_mode():
        keys = list(forward_all(x).keys())
    if "logits" not in keys:
        raise KeyError(f"{type(model).__name__}.forward_all returned {keys}, without 'logits'")
    return ["logits"] + [k for k in keys if k != "logits"]


def export_onnx(model: nn.Module, path: str | Path, opset: int = OPSET) -> dict[str, Any]:
    """Write ``model`` to ``path`` as ONNX (dynamic batch axis; eval mode; fp32).

    Parameters
    ----------
    model
        A model from :mod:`drcnet.models` (``input_kind`` and ``example_input`` are used).
    path
        Output ``.onnx`` file (written under a temporary name, then renamed).
    opset
        ONNX opset version.

    Returns
    -------
    dict
        The metadata stored in the file (``input_kind``, ``input``, ``outputs``, ``model``, ``config``).
    """
    _need("onnx")
    path = Path(path)
    was_training = model.training
    fast = {m: m.fast for m in model.modules() if hasattr(m, "fast")}
    model.eval()
    try:
        for m in fast:
            m.fast = False  # type: ignore[assignment]  # (torch types Module attributes as Tensor | Module)
        example = model.example_input(2).to(next(model.parameters()).device)  # type: ignore[operator]
        names = output_names(model, example)
        wrapped: nn.Module = _AllOutputs(model, names) if callable(getattr(model, "forward_all", None)) else model
        config = model.config_dict() if hasattr(model, "config_dict") else {}  # type: ignore[operator]
        meta = {
            "input_kind": getattr(model, "input_kind", "stripes"),
            "input": INPUT_NAME,
            "outputs": names,
            "model": getattr(model, "name", type(model).__name__),
            "config": config,
        }
        with atomic_path(path) as tmp:  # removed on error or interrupt; stale ones of an earlier kill too
            with torch.no_grad(), warnings.catch_warnings():
                # the trace fixes the input checks of forward() to the example's shape: expected, not a problem
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                # the TorchScript exporter (dynamo=False) needs no onnxscript; torch marks it deprecated
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
                warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
                warnings.filterwarnings("ignore", message=".*feature will be removed.*")
                torch.onnx.export(
                    wrapped,
                    (example,),
                    str(tmp),
                    input_names=[INPUT_NAME],
                    output_names=names,
                    dynamic_axes={INPUT_NAME: {0: "batch"}, **{k: {0: "batch"} for k in names}},
                    opset_version=opset,
                    dynamo=False,
                    do_constant_folding=True,
                )
            onnx = _need("onnx")
            proto = onnx.load(str(tmp))
            entry = proto.metadata_props.add()
            entry.key, entry.value = META_KEY, json.dumps(meta, default=list)
            onnx.save(proto, str(tmp))
    finally:
        for m, v in fast.items():
            m.fast = v
        model.train(was_training)
    return meta


class OnnxModel:
    """An exported model run by ONNX Runtime (CPU), usable wherever :mod:`drcnet.inference.engine` takes a model.

    Parameters
    ----------
    path
        ``.onnx`` file from :func:`export_onnx`.
    threads
        Intra-op threads (``None``: ONNX Runtime's default, one per core).

    Attributes
    ----------
    input_kind
        ``"stripes"``, ``"spectra1d"``, ``"hybrid"`` or ``"hybrid_optimal"``, from the file's metadata.
    output_names
        The file's outputs, ``"logits"`` first.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = _need("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{self.path}: not a readable ONNX model ({str(err).splitlines()[0]})") from err
        meta = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        info = json.loads(meta) if meta else {}
        self.meta: dict[str, Any] = info
        self.input_kind: str = info.get("input_kind", "stripes")
        self.input_name: str = self.session.get_inputs()[0].name
        self.output_names: list[str] = [o.name for o in self.session.get_outputs()]
        self.training = False

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for a normalised batch ``x`` ``(B, ...)`` float32: ``{name: (B, ...) float32}``."""
        res = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.output_names, res))

    def eval(self) -> OnnxModel:
        """No-op (an ONNX model is always in inference mode); for symmetry with torch models."""
        return self
