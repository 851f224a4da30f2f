"""The instrument adapter's detector (drcnet.hardware.Detector) and the reduction's use of it.

The reduction imports no instrument: every CCD number (rows, data columns, overscan, amplifier
boundary, trace origin) comes in as an argument. These tests hand it a small detector of another
layout and check the arithmetic exactly on synthetic frames with known bias levels per amplifier.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from drcnet.hardware import BLUE, Detector
from drcnet.instrument.config import DETECTOR, N_COLS, N_ROWS, OVERSCAN, U0
from drcnet.instrument.lamost import LAMOST, RAW_SHAPE
from drcnet.reduce.calib import amp_sections, amplifier_of, bias_model, column_means, levels, net_image
from drcnet.reduce.preview import binned_net, net_crop
from drcnet.reduce.stripes import StripePixels, cut_stripes
from drcnet.reduce.wavesol import columns_of, wavelength

SMALL = Detector(n_rows=24, n_cols=40, overscan=4, amp_boundary=24, u0=19.5, gain_e_per_adu=2.0, read_noise_e=5.0)
"""A made-up CCD: 24 rows, 40 data columns, amplifier B from column 24 (not the middle), 4 overscan columns."""
BIAS = (1000.0, 1060.0)


def small_frame(signal: np.ndarray) -> np.ndarray:
    """Raw uint16 frame of SMALL: ``signal`` (rows, 40) on amplifier A's and B's bias levels, exact overscan."""
    data = signal + np.where(np.arange(SMALL.n_cols) < SMALL.amp_boundary, BIAS[0], BIAS[1])[None, :]
    over = np.stack([np.full((SMALL.n_rows, SMALL.overscan), b) for b in BIAS], axis=1)
    return SMALL.assemble_raw(data.astype(np.uint16), over.astype(np.uint16))


def test_lamost_detector_holds_the_lamost_numbers():
    assert (DETECTOR.n_rows, DETECTOR.n_cols, DETECTOR.overscan) == (N_ROWS, N_COLS, OVERSCAN) == (4136, 4096, 32)
    assert DETECTOR.amp_boundary == 2048 and DETECTOR.u0 == U0 == 2047.5
    assert (DETECTOR.gain_e_per_adu, DETECTOR.read_noise_e) == (1.5, 3.5)
    assert LAMOST.detector is DETECTOR
    assert LAMOST.raw_shape == RAW_SHAPE == (4136, 4160)
    assert (LAMOST.n_rows, LAMOST.n_cols, LAMOST.overscan) == (4136, 4096, 32)
    assert DETECTOR.amp_sections == (slice(0, 2048), slice(2048, 4096)) == amp_sections(4096, 2048)


def test_detector_refuses_an_impossible_layout():
    with pytest.raises(ValueError, match=r"amplifier boundary at data column 40 is outside 1 \.\. 39"):
        Detector(n_rows=24, n_cols=40, overscan=4, amp_boundary=40, u0=19.5)
    with pytest.raises(ValueError, match="rows and columns must be positive"):
        Detector(n_rows=0, n_cols=40, overscan=4, amp_boundary=20, u0=19.5)


def test_raw_frame_layout_round_trips_on_another_detector():
    signal = np.arange(SMALL.n_rows * SMALL.n_cols, dtype=np.float64).reshape(SMALL.n_rows, SMALL.n_cols) % 500
    raw = small_frame(signal)
    assert raw.shape == SMALL.raw_shape == (24, 48)
    assert np.array_equal(raw[:, :4], np.full((24, 4), 1000)) and np.array_equal(raw[:, 44:], np.full((24, 4), 1060))
    over = SMALL.overscan_area(raw)
    assert over.shape == (24, 2, 4)
    assert np.array_equal(SMALL.assemble_raw(SMALL.data_area(raw), over), raw)
    assert amplifier_of(np.array([0, 23, 24, 39]), SMALL.amp_boundary).tolist() == [0, 0, 1, 1]
    assert SMALL.amplifier_of(np.array([23, 24])).tolist() == [0, 1]


def test_overscan_subtraction_follows_the_detectors_amplifier_boundary():
    signal = np.arange(SMALL.n_rows * SMALL.n_cols, dtype=np.float64).reshape(SMALL.n_rows, SMALL.n_cols) % 500
    raw = small_frame(signal)
    data, level = SMALL.data_area(raw), levels(SMALL.overscan_area(raw))
    assert np.array_equal(level, np.tile(BIAS, (24, 1)))
    assert np.array_equal(net_image(data, level, SMALL.amp_boundary, dtype=np.float64), signal)
    np.testing.assert_allclose(column_means(data, level, SMALL.amp_boundary), signal.mean(axis=0), rtol=0, atol=1e-9)
    # the LAMOST rule (boundary in the middle, column 20) would take amplifier B's level for columns 20..23 of A
    wrong = net_image(data, level, SMALL.n_cols // 2, dtype=np.float64) - signal
    assert np.array_equal(wrong[:, 20:24], np.full((24, 4), BIAS[0] - BIAS[1]))
    assert not wrong[:, :20].any() and not wrong[:, 24:].any()


def test_stripes_and_qa_pictures_follow_the_detector():
    signal = np.arange(SMALL.n_rows * SMALL.n_cols, dtype=np.float64).reshape(SMALL.n_rows, SMALL.n_cols) % 500
    raw = small_frame(signal)
    level = levels(SMALL.overscan_area(raw))
    cols = np.arange(10, 40)  # across the amplifier boundary at 24
    centres = np.array([[6.2] * cols.size, [16.7] * cols.size])
    pixels = StripePixels.from_centres(centres, cols, 2, n_rows=SMALL.n_rows, amp_boundary=SMALL.amp_boundary)
    assert pixels.runs() is not None and len(pixels.runs().fiber) == 4  # a run per fiber and amplifier
    net, got_raw = cut_stripes(raw, level, pixels, SMALL.overscan)
    assert np.array_equal(net[0], signal[4:9, 10:40]) and np.array_equal(net[1], signal[15:20, 10:40])
    assert np.array_equal(got_raw[0], raw[4:9, 14:44])
    # the same with the pixel gather (a stripe that leaves the CCD: no runs)
    off = StripePixels.from_centres(
        np.array([[22.6] * cols.size]), cols, 2, n_rows=SMALL.n_rows, amp_boundary=SMALL.amp_boundary
    )
    net_off, _ = cut_stripes(raw, level, off, SMALL.overscan)
    assert np.array_equal(net_off[0, :3], signal[21:24, 10:40]) and np.isnan(net_off[0, 3:]).all()
    binned = binned_net(SMALL.data_area(raw), level, 4, amp_boundary=SMALL.amp_boundary)
    assert np.array_equal(binned, signal.reshape(6, 4, 10, 4).mean(axis=(1, 3)).astype(np.float32))
    crop = net_crop(SMALL.data_area(raw), level, 3, 5, 20, 28, amp_boundary=SMALL.amp_boundary)
    assert np.array_equal(crop, signal[3:8, 20:28].astype(np.float32))


def test_bias_model_measures_each_amplifiers_offset_on_another_detector():
    def frames(n: int, offset_b: float, noise_adu: float = 0.0):
        rng = np.random.default_rng(3)
        for _ in range(n):
            raw = small_frame(np.zeros((SMALL.n_rows, SMALL.n_cols))).astype(np.float64)
            raw += noise_adu * rng.standard_normal(raw.shape)
            data = SMALL.data_area(raw).copy()
            data[:, SMALL.amp_boundary :] += offset_b  # data area of amplifier B above its overscan
            yield data.astype(np.float32), SMALL.overscan_area(raw).astype(np.float32)

    with np.errstate(invalid="ignore", divide="ignore"):  # noiseless frames: the read noise is 0
        exact = bias_model(frames(2, 7.0), detector=SMALL)
    assert exact.n_frames == 2 and exact.columns.shape == (40,)
    assert exact.offset_adu == (0.0, 7.0)
    assert np.array_equal(exact.columns, np.where(np.arange(40) < 24, 0.0, 7.0))
    noisy = bias_model(frames(3, 7.0, noise_adu=2.0), detector=SMALL)
    assert noisy.applied and abs(noisy.offset_adu[1] - 7.0) < 0.5 and abs(noisy.offset_adu[0]) < 0.5
    assert not bias_model(frames(3, 0.0, noise_adu=2.0), detector=SMALL).applied
    empty = bias_model([], detector=SMALL)
    assert empty.n_frames == 0 and empty.columns.shape == (40,) and not empty.applied


def test_wavelength_solution_is_about_the_detectors_origin():
    assert wavelength(BLUE, np.array([19.5]), u0=SMALL.u0)[0] == BLUE.center_a
    assert wavelength(BLUE, np.array([2047.5]), u0=DETECTOR.u0)[0] == BLUE.center_a
    waves = np.array([4500.0, 4780.0, 5100.0])
    small_cols = columns_of(BLUE, waves, u0=SMALL.u0)
    assert np.allclose(small_cols - columns_of(BLUE, waves, u0=DETECTOR.u0), SMALL.u0 - DETECTOR.u0, atol=1e-9)
    assert np.allclose(wavelength(BLUE, small_cols, u0=SMALL.u0), waves, atol=1e-9)


def test_header_record_keeps_the_adapters_record_cards():
    header = fits.Header({"OBSTYPE": "OBJECT", "EXPTIME": 1800.0, "SPID": 3, "GAIN": 1.5, "OBJECT": "ignored"})
    header["DATE-OBS"] = "2026-12-06T00:00:00"
    record = LAMOST.header_record(header)
    assert record == {"OBSTYPE": "OBJECT", "EXPTIME": 1800.0, "SPID": 3, "DATE-OBS": "2026-12-06T00:00:00", "GAIN": 1.5}
    assert set(LAMOST.record_keys) == {
        "OBSTYPE",
        "EXPTIME",
        "SPID",
        "CAMERA",
        "PLANID",
        "RUN",
        "MJD",
        "DATE-OBS",
        "GAIN",
        "RDNOISE",
        "DRCSEED",
    }


def test_simulated_frames_take_the_detectors_layout():
    """The simulator's read-out renders any detector: shape, overscan strips and each amplifier's bias level."""
    from drcnet.instrument.config import CCDConfig
    from drcnet.simulate.exposure.frames import read_frame

    ccd = CCDConfig(read_noise_e=0.0, dark_e_per_s=0.0, prnu_rms=0.0)  # noiseless: every pixel is exact
    prnu = np.ones((SMALL.n_rows, SMALL.n_cols), dtype=np.float32)
    bias, hits = read_frame(None, 0.0, ccd, np.random.default_rng(0), prnu, cosmics=False, detector=SMALL)
    assert bias.shape == SMALL.raw_shape and bias.dtype == np.uint16 and hits.size == 0
    expected = np.where(np.arange(48) < 4 + 24, 1000, 1060)[None, :].repeat(24, axis=0)
    assert np.array_equal(bias, expected)
    dark, _ = read_frame(
        np.zeros((24, 40), np.float32), 600.0, ccd, np.random.default_rng(0), prnu, cosmics=False, detector=SMALL
    )
    assert np.array_equal(dark, expected)
    level = levels(SMALL.overscan_area(bias))
    assert not net_image(SMALL.data_area(bias), level, SMALL.amp_boundary).any()
