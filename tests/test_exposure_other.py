"""Exposures with ``other`` fibers: the plan (exact share, F/G/K fibers unchanged), the truth table,
and a whole exposure classified end to end by a four-class model with catalogue heads."""

from __future__ import annotations

import numpy as np
import pytest

from drcnet.conventions import CLASSES, OTHER
from drcnet.library import load_templates
from drcnet.simulate.dataset import NO_LIGHT_MAG
from drcnet.simulate.exposure import ExposureConfig
from drcnet.simulate.exposure.plan import plan_fibers
from drcnet.simulate.exposure.run import fibermap_of, plate_templates


@pytest.fixture(scope="module")
def templates(data_root):
    libs = [data_root / "spectral_libraries" / "pyhammer", data_root / "spectral_libraries" / "stelib"]
    return load_templates(libs, classes=None).templates


def test_other_share_of_program_fibers_is_exact_and_fgk_fibers_unchanged(templates):
    plain = plate_templates(templates, other=False)
    mixed = plate_templates(templates, other=True)
    assert mixed[:len(plain)] == plain and {t.cls for t in mixed[len(plain):]} == {OTHER}
    base = plan_fibers(ExposureConfig(seed=3), plain, 1)
    cfg = ExposureConfig(seed=3, other=0.2)
    plan = plan_fibers(cfg, mixed, 1)
    program = (base.fibertype == "Obj") & np.array([s is not None and s.mag_r > 11 for s in base.sources])
    is_other = np.array([s is not None and mixed[s.template].cls == OTHER for s in plan.sources])
    assert is_other.sum() == int(np.floor(0.2 * program.sum() + 0.5))
    assert np.all(program[is_other])
    assert np.array_equal(plan.fibertype, base.fibertype)
    for f in np.flatnonzero(~is_other):  # every other fiber keeps exactly its star
        assert plan.sources[f] == base.sources[f] and plan.template_id[f] == base.template_id[f]
    sky = [f for f in np.flatnonzero(is_other) if mixed[plan.sources[f].template].meta.get("no_light")]
    assert sky and all(plan.sources[f].mag_r == NO_LIGHT_MAG for f in sky)
    # the truth table says "other" with the subclass kept
    fm = fibermap_of(plan, mixed, np.zeros(len(plan.sources)), cfg)
    assert set(fm.truth["TRUE_CLASS"][is_other]) == {OTHER}
    assert set(fm.truth["TRUE_CLASS"][fm.is_object & ~is_other]) <= set(CLASSES)
    subs = set(fm.truth["TRUE_SUBCLASS"][is_other])
    assert "SKY" in subs and all(s == "SKY" or s[:1] in "OBAM" for s in subs)


def test_other_without_sources_is_refused_by_default_zero(templates):
    plain = plate_templates(templates, other=False)
    plan = plan_fibers(ExposureConfig(seed=3, other=0.0), plain, 1)
    assert all(s is None or plain[s.template].cls in CLASSES for s in plan.sources)
    with pytest.raises(ValueError, match="O/B/A/M"):
        plan_fibers(ExposureConfig(seed=3, other=0.2), plain, 1)
