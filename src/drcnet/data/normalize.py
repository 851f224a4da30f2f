"""Input normalisation: the paper's Z-score, in one place for training, evaluation and prediction.

* 2D input (DRC-Net, FFCNN): each arm's 11 x 3000 stripe is Z-scored on its own,
  ``z = (x - mean) / std`` over its 33,000 pixels (paper eq. 1).
* 1D input (RC-Net): each arm's sky-subtracted aperture spectrum ``flux1d - sky1d`` is Z-scored
  on its own (3000 pixels), then blue and red are concatenated along wavelength: ``(1, 6000)``.
* hybrid input (:class:`drcnet.models.hybrid.HybridNet`): both, each arm's Z-scored 1D spectrum put
  under its Z-scored stripe as a twelfth row: ``(2, 12, 3000)`` (:func:`hybrid_input`); the
  ``hybrid_optimal`` input the same with the optimal extraction ``flux1d_opt - sky1d`` as that row.

A constant (or all-zero, e.g. dead-fiber) input has ``std == 0``: it is mapped to zeros instead of
NaN/inf (the std is floored at :data:`EPS` and the mean still removed). Non-finite pixels are set
to the mean (0 after normalisation) so one bad pixel cannot poison a batch.
Computation is in float64 for the statistics (float16 stripes hold values up to 65504) and the
result is float32. :func:`zscore` is the reference (everything in float64); stripes use
:func:`zscore_fast`, which keeps the float64 statistics but does the per-pixel arithmetic in float32,
in cache-sized blocks, without a float64 copy of the batch: the same values within a few float32 ulps,
several times less memory traffic (issue 11).
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-6
"""Floor for the standard deviation (input units); below it the input counts as constant."""

RAW_ARRAYS: dict[str, tuple[str, ...]] = {
    "stripes": ("stripes",),
    "spectra1d": ("flux1d", "sky1d"),
    "hybrid": ("stripes", "flux1d", "sky1d"),
    "hybrid_optimal": ("stripes", "flux1d_opt", "sky1d"),
}
"""The raw arrays (dataset file keys) each input kind is made from."""

ROLE_OF_ARRAY: dict[str, str] = {"flux1d_opt": "flux1d"}
"""Dataset file key -> the argument of :func:`prepare_input` it is passed as (others: their own name).
The ``hybrid_optimal`` input's 1D spectrum is the optimal extraction ``flux1d_opt``, passed as ``flux1d``."""


def input_roles(kind: str) -> tuple[str, ...]:
    """The :func:`prepare_input` arguments (``stripes``, ``flux1d``, ``sky1d``) input ``kind`` is made from."""
    return tuple(ROLE_OF_ARRAY.get(k, k) for k in RAW_ARRAYS[kind])


def as_roles(raw: dict[str, Any]) -> dict[str, Any]:
    """Raw arrays keyed by dataset file key -> the same keyed by :func:`prepare_input` argument."""
    return {ROLE_OF_ARRAY.get(k, k): v for k, v in raw.items()}


def is_hybrid(kind: str) -> bool:
    """Whether input ``kind`` holds the stripes and a 1D spectrum (``hybrid``, ``hybrid_optimal``)."""
    return kind in RAW_ARRAYS and {"stripes", "flux1d"} <= set(input_roles(kind))


def zscore(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Z-score ``x`` over ``axes`` (kept per remaining index), float32 out, safe for std 0 and NaN."""
    x = np.asarray(x)
    xf = x.astype(np.float64, copy=False)
    finite = np.isfinite(xf)
    if not finite.all():
        n = np.maximum(finite.sum(axis=axes, keepdims=True), 1)
        mean = np.where(finite, xf, 0.0).sum(axis=axes, keepdims=True) / n
        xf = np.where(finite, xf, mean)
    mean = xf.mean(axis=axes, keepdims=True)
    std = xf.std(axis=axes, keepdims=True)
    std = np.where(std > EPS, std, 1.0)
    return ((xf - mean) / std).astype(np.float32)


def zscore_stripes(stripes: np.ndarray) -> np.ndarray:
    """Z-score every 2D stripe on its own.

    Parameters
    ----------
    stripes
        ``(..., rows, cols)``: e.g. ``(2, 11, 3000)`` for one object or ``(N, 2, 11, 3000)``.

    Returns
    -------
    numpy.ndarray
        float32, same shape, each ``(rows, cols)`` stripe with mean 0 and std 1 (or all 0 if constant);
        computed by :func:`zscore_fast` (equal to :func:`zscore` within a few float32 ulps).
    """
    stripes = np.asarray(stripes)
    if stripes.ndim < 2:
        raise ValueError(f"stripes need at least 2 dimensions (rows, cols), got shape {stripes.shape}")
    return zscore_fast(stripes, (-2, -1))


def zscore_spectra1d(flux1d: np.ndarray, sky1d: np.ndarray | None = None) -> np.ndarray:
    """RC-Net input: per-arm Z-score of ``flux1d - sky1d``, arms concatenated along wavelength.

    Parameters
    ----------
    flux1d
        ``(..., arms, cols)``: ``(2, 3000)`` for one object or ``(N, 2, 3000)``.
    sky1d
        Same shape, subtracted first; ``None`` for already sky-subtracted spectra.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., 1, arms * cols)``: ``(1, 6000)`` per object.
    """
    flux1d = np.asarray(flux1d)
    if flux1d.ndim < 2:
        raise ValueError(f"flux1d needs (arms, cols) per object, got shape {flux1d.shape}")
    x = flux1d.astype(np.float64)
    if sky1d is not None:
        sky1d = np.asarray(sky1d)
        if sky1d.shape != flux1d.shape:
            raise ValueError(f"sky1d shape {sky1d.shape} differs from flux1d shape {flux1d.shape}")
        x = x - sky1d
    z = zscore(x, (-1,))
    return z.reshape(*z.shape[:-2], 1, z.shape[-2] * z.shape[-1])


def hybrid_input(z_stripes: np.ndarray, z_spectra1d: np.ndarray) -> np.ndarray:
    """The hybrid input from normalised parts: each arm's 1D spectrum as a twelfth row under its stripe.

    Parameters
    ----------
    z_stripes
        ``(..., 2, 11, L)`` Z-scored stripes (:func:`zscore_stripes`).
    z_spectra1d
        ``(..., 1, 2 L)`` the RC-Net input of the same objects (:func:`zscore_spectra1d`): blue then red.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., 2, 12, L)``.

    Raises
    ------
    ValueError
        The two do not belong to the same objects and arms (shapes disagree).
    """
    *lead, arms, _, length = z_stripes.shape
    if tuple(z_spectra1d.shape) != (*lead, 1, arms * length):
        raise ValueError(
            f"1D input {z_spectra1d.shape} does not match stripes {z_stripes.shape}: "
            f"expected {(*lead, 1, arms * length)}"
        )
    rows = z_spectra1d.reshape(*lead, arms, 1, length)
    return np.concatenate([z_stripes, rows.astype(np.float32, copy=False)], axis=-2)


def prepare_input(
    kind: str, stripes: np.ndarray | None = None, flux1d: np.ndarray | None = None, sky1d: np.ndarray | None = None
) -> np.ndarray:
    """The normalised model input of kind ``"stripes"``, ``"spectra1d"``, ``"hybrid"`` or ``"hybrid_optimal"``
    from raw arrays (for ``hybrid_optimal`` pass the optimal extraction ``flux1d_opt`` as ``flux1d``)."""
    if kind not in RAW_ARRAYS:
        raise ValueError(f"unknown input kind {kind!r}; expected one of {sorted(RAW_ARRAYS)}")
    z2d = z1d = None
    what = "hybrid " if is_hybrid(kind) else ""
    if "stripes" in input_roles(kind):
        if stripes is None:
            raise ValueError(f"this {what}model takes 2D stripes: pass stripes=(N, 2, 11, 3000)")
        z2d = zscore_stripes(stripes)
    if "flux1d" in input_roles(kind):
        if flux1d is None:
            extraction = " (the optimal extraction)" if kind == "hybrid_optimal" else ""
            raise ValueError(f"this {what}model takes 1D spectra: pass flux1d=(N, 2, 3000){extraction} (and sky1d)")
        z1d = zscore_spectra1d(flux1d, sky1d)
    if z2d is not None and z1d is not None:
        return hybrid_input(z2d, z1d)
    return z2d if z2d is not None else z1d  # type: ignore[return-value]  # (one of them is set)


def zscore_fast(x: np.ndarray, axes: tuple[int, ...], return_finite: bool = False) -> Any:
    """:func:`zscore` for a whole batch without a float64 copy of the data: same result within ~1e-7 relative.

    The statistics are accumulated in float64 (as in :func:`zscore`), the arithmetic on the pixels is
    float32: the mean is split into a float32 head and a float32 remainder so the centring loses nothing
    to the mean's rounding (a 65504 ADU mean would otherwise shift every pixel by up to 0.004 ADU), and
    the variance includes the float32 residual mean. The result differs from :func:`zscore` by at most a
    few float32 ulps of each output value (tested against it); objects with a NaN/inf pixel are passed
    to :func:`zscore` itself.

    Parameters
    ----------
    x
        ``(N, ...)`` float16, float32 or float64 input, e.g. ``(N, 2, 11, 3000)`` raw stripes in ADU;
        the reduction ``axes`` must be the trailing axes (negative indices).
    axes
        Trailing axes to Z-score over, e.g. ``(-2, -1)`` for stripes, ``(-1,)`` for 1D spectra.

    return_finite
        Also return which objects hold only finite pixels.

    Returns
    -------
    numpy.ndarray
        float32, same shape, zero mean and unit std over ``axes`` (zeros where the std is <= :data:`EPS`).
    finite : numpy.ndarray
        Only with ``return_finite``: ``x.shape[:-len(axes)]`` bool, True where every pixel is finite.
    """
    x = np.asarray(x)
    k = len(axes)
    if sorted(axes) != list(range(-k, 0)):
        raise ValueError(f"zscore_fast reduces trailing axes only, got {axes}")
    if x.ndim < k:
        raise ValueError(f"input of shape {x.shape} has fewer than {k} axes")
    lead = x.shape[: x.ndim - k]
    n = int(np.prod(x.shape[x.ndim - k :]))
    if x.dtype == np.float64:
        z = zscore(x, axes)
        return (z, np.isfinite(x.reshape(*lead, n)).all(axis=-1)) if return_finite else z
    src = x.reshape(-1, n)
    out = np.empty(src.shape, dtype=np.float32)
    bad: list[int] = []
    # blocks of ~1 MB: the conversion and the passes over the pixels run in cache
    step = max(1, (1 << 18) // max(n, 1))
    for a in range(0, len(out), step):
        blk = out[a : a + step]
        np.copyto(blk, src[a : a + step])
        # a float64 sum of float16/float32 values cannot overflow: it is finite exactly when every pixel is
        mean = blk.mean(axis=1, dtype=np.float64)
        finite = np.isfinite(mean)
        if not finite.all():
            bad += (a + np.flatnonzero(~finite)).tolist()
            mean = np.where(finite, mean, 0.0)
        with np.errstate(invalid="ignore", over="ignore"):
            _center_scale(blk, mean, n)
    if bad:
        out[bad] = zscore(src[bad], (-1,))
    z = out.reshape(x.shape)
    if return_finite:
        finite = np.ones(len(out), dtype=bool)
        finite[bad] = False
        return z, finite.reshape(lead)
    return z


def _center_scale(out: np.ndarray, mean: np.ndarray, n: int) -> None:
    """In place: ``out`` ``(rows, n)`` float32 minus ``mean`` ``(rows,)`` float64, divided by its std."""
    hi = mean.astype(np.float32)
    lo = (mean - hi).astype(np.float32)
    out -= hi[:, None]
    out -= lo[:, None]
    # residual mean of the float32 centred values and their second moment, both accumulated in float64
    r = out.mean(axis=1, dtype=np.float64)
    sq = np.einsum("ij,ij->i", out, out, dtype=np.float64) / n
    std = np.sqrt(np.maximum(sq - r * r, 0.0))
    scale = np.where(std > EPS, 1.0 / np.where(std > EPS, std, 1.0), 1.0)
    out -= r.astype(np.float32)[:, None]
    out *= scale.astype(np.float32)[:, None]
