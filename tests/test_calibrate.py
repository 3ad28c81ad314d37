"""The joint calibration: agreement with the single-modality MAP, the shipped file, draws -> models."""

import json

import numpy as np
import pytest

from pkpd import calibrate
from pkpd.fit import Problem, fit_map


def test_joint_fit_of_one_modality_equals_its_map():
    """With one modality and study effects pinned (tau -> 0) the joint Levenberg-Marquardt on the
    block-assembled normal equations must land on fit_map's optimum and Laplace covariance."""
    cal = calibrate.calibrate(["dmt"], tau=1e-6, draws=50, progress=False)
    ref = fit_map(Problem("dmt"), starts=1, progress=False)
    keys = {k.split(".", 1)[1]: i for i, k in enumerate(cal.keys)}
    for j, name in enumerate(ref.names):
        i = keys[name]
        assert cal.map_z[i] == pytest.approx(ref.z[j], abs=2e-3)
        assert cal.parameters[i]["sd_z"] == pytest.approx(np.sqrt(ref.cov_z[j, j]), rel=0.02)
    assert cal.info["converged"]
    assert cal.draws_z.shape == (50, len(cal.keys))


@pytest.fixture(scope="module")
def shipped():
    return calibrate.load()


def test_shipped_calibration_covers_every_modality(shipped):
    import pkpd

    per = shipped.info["per_modality"]
    assert set(per) == set(pkpd.modalities())
    assert shipped.info["converged"]
    s = shipped.summary()
    assert len(s) == len(shipped.keys) and s["sd_ratio"].between(0, 1.05).all()
    c = shipped.contraction()
    assert all(0.0 <= v <= 1.0 for v in c.values())


def test_draws_become_models_with_shared_core_and_own_pk(shipped):
    i_form = shipped.keys.index("k_spine_form")
    i_cl = shipped.keys.index("fluoxetine.cl@human")
    flx = shipped.models("fluoxetine", 3)
    ect = shipped.models("ect", 3)
    psi = shipped.models("psilocybin", 3)
    for k in range(3):
        z = shipped.draws_z[k]
        assert float(flx[k].core.k_spine_form) == pytest.approx(np.exp(z[i_form]))
        assert float(ect[k].core.k_spine_form) == pytest.approx(np.exp(z[i_form]))  # shared core
        assert float(flx[k].driver.pk.cl) == pytest.approx(np.exp(z[i_cl]))
        assert float(psi[k].driver.pk.cl) != pytest.approx(np.exp(z[i_cl]))  # not fluoxetine's
    m = shipped.model("psilocybin")
    assert float(m.core.k_spine_form) == pytest.approx(np.exp(shipped.map_z[i_form]))


def test_round_trip_and_errors(shipped, tmp_path):
    p = tmp_path / "cal.json"
    shipped.save(p)
    back = calibrate.load(p)
    np.testing.assert_array_equal(back.draws_z, shipped.draws_z)
    np.testing.assert_array_equal(back.map_z, shipped.map_z)
    assert back.parameters == shipped.parameters
    with pytest.raises(ValueError, match="n=0"):
        shipped.models("ect", 0)
    with pytest.raises(ValueError, match="exceeds"):
        shipped.models("ect", 10_000)
    with pytest.raises(FileNotFoundError, match="pkpd.calibrate"):
        calibrate.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        calibrate.load(bad)
    bad.write_text(json.dumps({"parameters": []}))
    with pytest.raises(ValueError, match="missing 'map_z'"):
        calibrate.load(bad)
    with pytest.raises(ValueError, match="tau"):
        calibrate.JointProblem(["lsd"], tau=0.0, progress=False)


def test_model_calibrated_flag(shipped):
    import pkpd

    m = pkpd.model("fluoxetine", calibrated=True)
    i = shipped.keys.index("fluoxetine.cl@human")
    assert float(m.driver.pk.cl) == pytest.approx(np.exp(shipped.map_z[i]))
    assert float(pkpd.model("fluoxetine").driver.pk.cl) != pytest.approx(float(m.driver.pk.cl))
    with pytest.raises(ValueError, match="overrides"):
        pkpd.model("fluoxetine", calibrated=True, k_bdnf=1.0)
