"""The fast raw-frame path (issue 11) gives the numbers of the plain one.

Each vectorised step is compared with the per-fiber (or plain) implementation it replaced, kept as
the reference, on the real numbers of the shared simulated exposure (and on perturbed copies of them
that reach the clipping and too-few-points branches). No timings here: the speed is measured by
``benchmarks/bench_frames.py`` against the previous path in the same run.
"""

from __future__ import annotations

import io
import sys

import h5py
import numpy as np
import pytest
from astropy.io import fits

from _support.exposure import clean_reduction, full_exposure, one
from _support.reduce_references import (
    clean_sky_per_fiber,
    cut_stripes_by_gather,
    fit_offsets_per_fiber,
    fit_traces_per_fiber,
    optimal_extract_one_pass,
)
from drcnet.conventions import stripe_columns
from drcnet.instrument.config import DETECTOR, N_COLS, N_ROWS, U0
from drcnet.instrument.rawframe import _read_plain_image, read_raw_frame
from drcnet.reduce.calib import column_means, levels, net_image, sorted_median
from drcnet.reduce.extract import boxcar, boxcar_extract, optimal_extract
from drcnet.reduce.preview import binned_net, net_crop
from drcnet.reduce.sky import clean_sky
from drcnet.reduce.snr import measure_snr_r, measure_snr_r_all
from drcnet.reduce.spikes import _MEDIAN12, _SORT12, _gapped_median, median_filter_exact, spike_columns
from drcnet.reduce.stripes import StripePixels, cut_stripes, stripe_rows_all
from drcnet.reduce.trace import TraceConfig, _fit_traces
from drcnet.reduce.wavecal import WavecalConfig, fit_offsets, line_columns


@pytest.fixture(scope="module")
def exposure(tmp_path_factory, data_root):
    return full_exposure(tmp_path_factory, data_root)


@pytest.fixture(scope="module")
def reduced(exposure, data_root):
    return clean_reduction(exposure, data_root)


def _perturbed(values: np.ndarray, seed: int, outlier: float) -> list[np.ndarray]:
    """The real values, and copies with NaN holes, outliers and nearly empty rows (the clipping branches)."""
    rng = np.random.default_rng(seed)
    out = [values]
    v = values.copy()
    v[rng.random(v.shape) < 0.15] = np.nan
    out.append(v)
    v = values.copy()
    hit = rng.random(v.shape) < 0.05
    v[hit] += outlier * rng.choice([-1, 1], size=int(hit.sum()))
    out.append(v)
    v = values.copy()
    rows = rng.choice(v.shape[0], size=min(20, v.shape[0]), replace=False)
    for k, r in enumerate(rows):
        keep = rng.choice(v.shape[1], size=k % 4 + 1, replace=False)
        drop = np.setdiff1d(np.arange(v.shape[1]), keep)
        v[r, drop] = np.nan
    out.append(v)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["blue", "red"])
def test_trace_fits_equal_the_per_fiber_fits(reduced, arm):
    t = reduced.arms[arm].traces
    cfg = TraceConfig()
    v = (t.bin_cols - U0) / U0
    design = v[:, None] ** np.arange(cfg.degree + 1)[None, :]
    for centres in _perturbed(t.bin_centres, 1, 2.0):
        skip = t.lost.copy()
        new = _fit_traces(centres, skip, design, cfg)
        ref = fit_traces_per_fiber(centres, skip, design, cfg)
        assert np.array_equal(new[2], ref[2])  # the same fibers lost
        ok = ~ref[2]
        assert np.max(np.abs(new[0][ok] - ref[0][ok])) < 1e-8  # rows (normal equations vs lstsq)
        assert np.max(np.abs(new[1][ok] - ref[1][ok])) < 1e-9
        assert np.all(np.isnan(new[1][~ok])) and np.all(np.isnan(ref[1][~ok]))


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["blue", "red"])
@pytest.mark.parametrize("degree", [0, 1])
def test_wavelength_offsets_equal_the_per_fiber_fits(reduced, arm, degree):
    w = reduced.arms[arm].wave
    cfg = WavecalConfig(degree=degree)
    for measured in _perturbed(w.measured, 2, 3.0):
        lost = reduced.arms[arm].lost
        new = fit_offsets(measured, w.nominal, lost, cfg, u0=U0)
        ref = fit_offsets_per_fiber(measured, w.nominal, lost, cfg)
        assert np.array_equal(new[3], ref[3]) and np.array_equal(new[4], ref[4])  # lines kept
        for a, b in zip(new[:3], ref[:3], strict=True):
            assert np.array_equal(np.isnan(a), np.isnan(b))
            assert np.nanmax(np.abs(a - b)) < 1e-12  # px


@pytest.mark.slow
def test_median_selection_network_is_scipys_gapped_median(reduced):
    # the network sorts every 0-1 input (0-1 principle), and output 6 needs only the kept comparators
    bits = ((np.arange(4096)[None, :] >> np.arange(12)[:, None]) & 1).astype(np.int8)
    v = list(bits)
    for layer in _SORT12:
        for a, b in layer:
            v[a], v[b] = np.minimum(v[a], v[b]), np.maximum(v[a], v[b])
    assert np.all(np.diff(np.stack(v), axis=0) >= 0)
    assert len(_MEDIAN12) < sum(len(layer) for layer in _SORT12)
    rng = np.random.default_rng(3)
    tied = np.round(rng.normal(100, 3, (40, 500))).astype(np.float32).astype(np.float64)
    for arm in ("blue", "red"):
        f = np.asarray(reduced.arms[arm].flux_opt, dtype=np.float64)
        for x in (f, tied):
            assert np.array_equal(_gapped_median(x, 3, 6), median_filter_exact(x, 3, 6))
    # a NaN (not from the optimal extraction) falls back to scipy's filter
    x = tied.copy()
    x[3, 7] = np.nan
    spike_columns(x, np.ones_like(x))


@pytest.mark.slow
def test_snr_of_all_fibers_equals_the_per_fiber_measure(reduced):
    red = reduced.arms["red"]
    got = measure_snr_r_all(red.flux1d, red.sky1d, red.ivar1d, red.wave1d, skip=red.lost)
    ref = np.array(
        [
            0.0 if red.lost[f] else measure_snr_r(red.flux1d[f], red.sky1d[f], red.ivar1d[f], red.wave1d[f])
            for f in range(len(red.lost))
        ]
    )
    assert np.array_equal(got, ref)
    assert np.array_equal(got, reduced.snr_r)
    # a fiber whose band has another number of columns (odd/even counts), same numbers
    wave = red.wave1d.copy()
    wave[5] += 3.0
    got = measure_snr_r_all(red.flux1d, red.sky1d, red.ivar1d, wave, skip=red.lost)
    assert got[5] == measure_snr_r(red.flux1d[5], red.sky1d[5], red.ivar1d[5], wave[5])
    with pytest.raises(ValueError, match="fiber 3: the spectrum does not reach the r band"):
        bad = red.wave1d.copy()
        bad[2] = 9000.0
        measure_snr_r_all(red.flux1d, red.sky1d, red.ivar1d, bad)


@pytest.mark.slow
def test_fast_fits_reader_gives_astropys_pixels_and_header(exposure, tmp_path):
    for p in sorted(exposure.glob("r*-01b-*.fit"))[:3] + [one(exposure, "ro-01r-*.fit")]:
        got = _read_plain_image(p)
        assert got is not None
        with fits.open(io.BytesIO(p.read_bytes()), memmap=False) as h:
            header, data = h[0].header.copy(), np.asarray(h[0].data)
        assert got[0].dtype == np.uint16 and np.array_equal(got[0], data)
        assert list(got[1].keys()) == list(header.keys()) and got[1] == header
    data = np.random.default_rng(0).normal(size=(30, 40)).astype(np.float32)
    data[3, 4] = np.nan
    fits.PrimaryHDU(data).writeto(tmp_path / "f.fits")
    got = _read_plain_image(tmp_path / "f.fits")
    assert got is not None and got[0].dtype == np.float32 and np.array_equal(got[0], data, equal_nan=True)
    fits.PrimaryHDU(np.nan_to_num(data).astype(np.int32)).writeto(tmp_path / "i.fits")
    assert _read_plain_image(tmp_path / "i.fits") is None  # other pixel types: astropy's reader
    raw = one(exposure, "ra-01b-*.fit").read_bytes()
    (tmp_path / "cut.fit").write_bytes(raw[: len(raw) // 3])
    assert _read_plain_image(tmp_path / "cut.fit") is None  # truncated: astropy's reader refuses it


@pytest.mark.slow
@pytest.mark.skipif(sys.byteorder != "little", reason="the fast reader is for little-endian machines")
def test_qa_pictures_are_the_net_frame(reduced, exposure):
    a = reduced.arms["red"]
    frame = read_raw_frame(one(exposure, "ro-01r-*.fit"))
    level = levels(frame.overscan)
    net = net_image(frame.data, level, 2048)
    ref = net[: net.shape[0] // 8 * 8].reshape(-1, 8, 512, 8).mean(axis=(1, 3))
    assert a.preview is not None and a.preview.shape == ref.shape
    assert np.allclose(a.preview, ref, rtol=1e-5, atol=1e-2)  # float64 block means vs float32 ones
    assert np.array_equal(binned_net(frame.data, level, 8, amp_boundary=2048), a.preview)
    r0, c0 = a.zoom_origin
    assert a.zoom is not None
    assert np.array_equal(a.zoom, net[r0 : r0 + a.zoom.shape[0], c0 : c0 + a.zoom.shape[1]])
    assert np.array_equal(net_crop(frame.data, level, r0, 100, c0, c0 + 300, amp_boundary=2048), a.zoom)


@pytest.mark.slow
def test_streamed_classification_writes_the_dataset_of_the_list_path(reduced, exposure, tmp_path, data_root):
    from drcnet.reduce.arm import ReduceConfig
    from drcnet.workflows.classify_exposure import classify_exposure
    from drcnet.workflows.qa import QASpectrograph, qa_summary
    from drcnet.workflows.reduced_dataset import write_reduced_dataset

    def predictor(stripes, flux1d, sky1d):
        return np.full((len(stripes), 3), 1 / 3)

    res = classify_exposure(
        None,
        exposure,
        tmp_path / "cat.csv",
        predictor=predictor,
        data_root=data_root,
        dataset_out=tmp_path / "streamed.h5",
        qa_dir=tmp_path / "qa",
    )
    write_reduced_dataset([reduced], tmp_path / "list.h5", ReduceConfig(), exposure)
    with h5py.File(tmp_path / "streamed.h5") as a, h5py.File(tmp_path / "list.h5") as b:
        names: list[str] = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        assert names and sorted(names) == sorted(n for n in names if n in b)
        for n in names:
            assert np.array_equal(a[n][()], b[n][()], equal_nan=a[n].dtype.kind == "f"), n
        assert set(a.attrs) == set(b.attrs)
        assert a.attrs["n_objects"] == b.attrs["n_objects"] == len(reduced.fibermap)
    assert len(res.table) == int(reduced.fibermap.is_object.sum())
    assert not list(tmp_path.glob(".*.part"))  # nothing half-written left behind
    q = qa_summary(reduced, res.table)
    assert isinstance(q, QASpectrograph)
    size = sum(
        np.asarray(x).nbytes
        for arm in q.arms.values()
        for x in (arm.preview, arm.zoom, *[v for s in arm.spectra.values() for v in s.values()])
    )
    assert size < 8e6  # what the QA page keeps of a spectrograph: a few MB, not its ~200 MB reduction
    for arm in q.arms.values():  # and no view that would keep a reduction's array alive
        for x in (arm.lost, *[v for sp in arm.spectra.values() for v in sp.values()]):
            assert x.base is None or x.base.nbytes == x.nbytes


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["blue", "red"])
def test_sky_cleaning_of_all_sky_fibers_equals_the_per_fiber_cleaning(reduced, arm):
    a = reduced.arms[arm]
    sky = reduced.fibermap.of_type("Sky") & ~a.lost
    norm = a.flux1d[sky] / a.efficiency[sky]
    wave = a.wave1d[sky]
    hit = norm.copy()
    hit[2, 1000:1003] += 5000.0  # a cosmic ray
    for x in (norm, hit, norm[:2]):
        assert np.array_equal(clean_sky(x, wave[: len(x)]), clean_sky_per_fiber(x, wave[: len(x)]))
    assert not np.array_equal(clean_sky(hit, wave), hit)


@pytest.mark.slow
def test_cli_frames_reduce_streams_the_dataset_of_the_list_path(reduced, exposure, tmp_path, data_root):
    # `drcnet frames reduce` reduces and writes spectrograph by spectrograph: the same file as the list path
    from typer.testing import CliRunner

    from drcnet.cli import app
    from drcnet.reduce.arm import ReduceConfig
    from drcnet.workflows.reduced_dataset import write_reduced_dataset

    res = CliRunner().invoke(
        app, ["frames", "reduce", str(exposure), "--out", str(tmp_path / "cli.h5"), "--data-root", str(data_root)]
    )
    assert res.exit_code == 0, res.output
    assert f"({len(reduced.fibermap)} fibers)" in res.output and res.output.count(" traces rms ") == 2
    write_reduced_dataset([reduced], tmp_path / "list.h5", ReduceConfig(), exposure)
    with h5py.File(tmp_path / "cli.h5") as a, h5py.File(tmp_path / "list.h5") as b:
        names: list[str] = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        assert names and set(names) == {n for n in names if n in b}
        for n in names:
            assert np.array_equal(a[n][()], b[n][()], equal_nan=a[n].dtype.kind == "f"), n


@pytest.fixture(scope="module")
def red_arm(exposure, data_root):
    """The red arm's raw frames, traces, science stripes and flat profile (the steps' own inputs)."""
    from drcnet.instrument.lamost import LAMOST
    from drcnet.reduce.arm import ReduceConfig, trace_flat
    from drcnet.reduce.science import cut_science, flat_profile
    from drcnet.workflows.reduce_exposure import load_lines

    cfg = ReduceConfig()
    sci = read_raw_frame(one(exposure, "ro-01r-*.fit"))
    arc = read_raw_frame(one(exposure, "ra-01r-*.fit"))
    flat = read_raw_frame(one(exposure, "rf-01r-*.fit"))
    flat_net, traces = trace_flat(flat.data, flat.overscan, None, 250, cfg, detector=DETECTOR)
    centres = traces.centres(np.arange(N_COLS))
    science = cut_science(sci.raw, sci.overscan, LAMOST.overscan, centres, None, 65535.0, detector=DETECTOR)
    profile, _ = flat_profile(flat_net, science.pixels, cfg.flat_smooth_cols)
    lines = load_lines(cfg, data_root)
    return {
        "sci": sci,
        "arc": arc,
        "flat_net": flat_net,
        "centres": centres,
        "science": science,
        "profile": profile,
        "arc_cols": line_columns(cfg.instrument.arm("red"), lines, cfg.wavecal, detector=DETECTOR),
        "offset": LAMOST.overscan,
    }


@pytest.mark.slow
def test_stripe_run_copies_equal_the_pixel_gather(red_arm):
    sci, arc, centres, off = red_arm["sci"], red_arm["arc"], red_arm["centres"], red_arm["offset"]
    cols = stripe_columns()
    level = levels(sci.overscan)
    bias = np.random.default_rng(4).normal(0, 0.7, N_COLS)
    as_float = sci.raw.astype(np.float32)
    as_float[np.random.default_rng(5).random(as_float.shape) < 0.001] = np.nan
    cases = [(sci.raw, cols, None), (sci.raw, cols, bias), (as_float, cols, None), (arc.raw, red_arm["arc_cols"], None)]
    for raw, c, b in cases:
        pixels = StripePixels.from_centres(centres[:, c], c, n_rows=N_ROWS, amp_boundary=2048)
        assert pixels.runs() is not None
        net, got_raw = cut_stripes(raw, level, pixels, off, b)
        ref_net, ref_raw = cut_stripes_by_gather(raw, level, centres[:, c], c, off, b, n_rows=N_ROWS)
        assert net.dtype == np.float64 and got_raw.dtype == raw.dtype
        assert np.array_equal(net, ref_net, equal_nan=True) and np.array_equal(got_raw, ref_raw, equal_nan=True)
        assert np.array_equal(pixels.take(red_arm["flat_net"]), pixels.take_indexed(red_arm["flat_net"]))
        assert np.array_equal(pixels.rows, stripe_rows_all(centres[:, c], 5, np.intp))
    # traces running off the CCD: rows clipped, their pixels NaN (the pixel gather, no runs)
    shifted = centres[:, cols] - centres[0, cols].min() - 2.0
    pixels = StripePixels.from_centres(shifted, cols, n_rows=N_ROWS, amp_boundary=2048)
    assert pixels.off.any() and pixels.runs() is None
    net, got_raw = cut_stripes(sci.raw, level, pixels, off)
    ref_net, ref_raw = cut_stripes_by_gather(sci.raw, level, shifted, cols, off, n_rows=N_ROWS)
    assert np.array_equal(net, ref_net, equal_nan=True) and np.array_equal(got_raw, ref_raw)
    # short runs (a trace that steps every column) fall back to the pixel gather, same numbers
    zigzag = centres[:, cols] + np.where(np.arange(cols.size) % 2, 0.6, -0.6)[None, :]
    pixels = StripePixels.from_centres(zigzag, cols, n_rows=N_ROWS, amp_boundary=2048)
    assert pixels.runs() is None
    assert np.array_equal(
        cut_stripes(sci.raw, level, pixels, off)[0],
        cut_stripes_by_gather(sci.raw, level, zigzag, cols, off, n_rows=N_ROWS)[0],
    )


@pytest.mark.slow
def test_chunked_optimal_extraction_equals_the_one_pass(red_arm):
    science, profile = red_arm["science"], red_arm["profile"]
    s32 = science.stripes.astype(np.float32)
    rng = np.random.default_rng(6)
    hits = s32.copy()
    hit = rng.random(hits.shape) < 2e-3
    hits[hit] += rng.uniform(200, 5000, int(hit.sum())).astype(np.float32)
    holes = s32.copy()
    holes[rng.random(holes.shape) < 1e-3] = np.nan
    infs = s32.copy()  # +-inf pixels, masked bad as cut_science does
    infs[0, 5, 100], infs[2, 3, 50] = np.inf, -np.inf
    for stripes, bad in ((s32, science.bad), (hits, None), (holes, np.isnan(holes)), (infs, ~np.isfinite(infs))):
        with np.errstate(invalid="ignore", over="ignore"):
            ref = optimal_extract_one_pass(stripes, profile, 1.5, 3.0, 5.0, bad=bad)
            for chunk in (8, 7, 300):
                got = optimal_extract(stripes, profile, 1.5, 3.0, 5.0, bad=bad, chunk=chunk)
                for a, b in zip((got.flux, got.ivar, got.rejected, got.model), ref, strict=True):
                    assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        assert ref[2].any()  # the clipping was reached
    flux, ivar = boxcar(science.stripes, 1.5, 3.0)
    ref_flux, ref_ivar = boxcar_extract(np.moveaxis(science.stripes, 1, 0), 1.5, 3.0)
    assert np.array_equal(flux, ref_flux, equal_nan=True) and np.array_equal(ivar, ref_ivar, equal_nan=True)


@pytest.mark.slow
def test_integer_sums_and_sorted_medians_equal_numpys_means_and_medians(red_arm):
    sci = red_arm["sci"]
    level = levels(sci.overscan)
    # 16-bit integer pixels: exact integer sums; signed copies take numpy's float64 mean
    assert np.array_equal(
        binned_net(sci.data, level, 8, amp_boundary=2048),
        binned_net(sci.data.astype(np.int32), level, 8, amp_boundary=2048),
    )
    assert np.array_equal(column_means(sci.data, level, 2048), column_means(sci.data.astype(np.int32), level, 2048))
    o = sci.overscan.astype(np.float64)
    assert np.array_equal(sorted_median(o, axis=2, keepdims=True), np.median(o, axis=2, keepdims=True))
    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 20, 32, 33):
        x = np.round(rng.normal(0, 3, (40, n, 3)), 1)
        x[0, :, 0] = 0.0
        x[1, : n // 2 + 1, 1] = -0.0  # signed zeros in the middle: numpy's answer
        x[2, 0, 2] = np.nan
        x[3, :, 0] = np.inf
        for axis in (0, 1, 2, -1):
            for keep in (False, True):
                got, ref = sorted_median(x, axis=axis, keepdims=keep), np.median(x, axis=axis, keepdims=keep)
                assert np.array_equal(got, ref, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(ref))


def test_extraction_edge_cases_keep_the_previous_answers():
    # a masked inf pixel weighs nothing: a flat 100 ADU stripe of 11 rows gives 1100 in every column
    s = np.full((1, 11, 3), 100.0, dtype=np.float32)
    s[0, 5, 1] = np.inf
    prof = np.full((1, 11, 3), 1 / 11, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        got = optimal_extract(s, prof, 1.5, 3.0, 5.0, bad=~np.isfinite(s))
    np.testing.assert_allclose(got.flux[0], [1100.0, 1100.0, 1100.0], rtol=1e-6)
    assert np.isfinite(got.ivar).all()
    # a NaN trace centre is off the CCD: that fiber's stripe is NaN (flagged), the others are cut
    centres = np.array([[50.0, 50.2, 50.4], [np.nan, np.nan, np.nan]])
    with np.errstate(invalid="ignore"):
        pix = StripePixels.from_centres(centres, np.array([10, 11, 12]), n_rows=200, amp_boundary=2048)
    assert pix.off[1].all() and not pix.off[0].any()
    frame = np.arange(200 * 40, dtype=np.uint16).reshape(200, 40)
    net, _ = cut_stripes(frame, np.zeros((200, 2)), pix, 0)
    assert np.isnan(net[1]).all() and np.array_equal(net[0, :, 0], frame[45:56, 10].astype(np.float64))
    # integer stripes: true division, as before the in-place arithmetic
    st = np.arange(33, dtype=np.uint16).reshape(11, 3)
    flux, ivar = boxcar_extract(st, 1.5, 3.0)
    np.testing.assert_array_equal(ivar, 1.0 / (st / 1.5 + 9.0).sum(axis=0))
    assert np.array_equal(flux, st.sum(axis=0))
