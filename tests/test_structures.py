"""Candidate model structures (models/structures.toml, pkpd.structures): selection, validation,
and each alternative reducing to the reference structure in its limiting case."""

import dataclasses

import diffrax as dfx
import numpy as np
import pytest

import pkpd
from pkpd import cards, params, structures
from pkpd.calibrate import Calibration

TIGHT = dict(rtol=1e-10, atol=1e-13, solver=dfx.Kvaerno5())


def _run(name, structure, readout, t, schedule=None, **overrides):
    m = pkpd.model(name, structure=structure)
    for k, v in overrides.items():
        m = params.set(m, k, np.float64(v))
    traj = pkpd.simulate(m, schedule or pkpd.protocol(name), t, **TIGHT)
    return np.asarray(traj[readout])


def _max_rel(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def test_catalogue_matches_the_code_and_the_cards():
    cat = structures.catalogue()
    assert set(cat) == set(structures.IMPLEMENTED)
    for item, table in cat.items():
        assert set(table["candidates"]) == set(structures.IMPLEMENTED[item])
        for cand in table["candidates"]:
            for card, name in structures.parameters(((item, cand),)):
                kind = "core" if card == "core" else "driver"
                p = cards.load(kind, card).get(name, "all")
                assert p.status in cards.STATUSES and p.note, (card, name)


def test_resolve_completes_with_defaults_and_names_bad_choices():
    full = structures.resolve({"ssri": "two_stage"})
    assert dict(full)["ssri"] == "two_stage"
    assert dict(full)["tbs"] == structures.catalogue()["tbs"]["default"]
    assert structures.resolve(full) == full
    with pytest.raises(ValueError, match="unknown item 'nope'"):
        structures.resolve({"nope": "x"})
    with pytest.raises(ValueError, match="'three_stage' is not a candidate"):
        structures.resolve({"ssri": "three_stage"})
    with pytest.raises(ValueError, match="structure"):
        pkpd.model("fluoxetine", structure={"ssri": "three_stage"})


def test_structure_adds_its_states_and_parameters_only_where_chosen():
    base = pkpd.model("fluoxetine", structure={"ssri": "one_stage"})
    two = pkpd.model("fluoxetine", structure={"ssri": "two_stage"})
    assert "transcription" in two.state_names and "transcription" not in base.state_names
    assert params.has(two, "k_transcription") and not params.has(base, "k_transcription")
    ect = pkpd.model("ect", structure={"post_course": "two_pool", "clinical": "per_family"})
    assert "volume_transient" in ect.state_names
    assert params.has(ect, "clinical_rate_ratio") and params.has(ect, "k_volume_transient")
    # ketamine is the reference family of the per-family clinical lag: it has no ratio of its own
    assert not params.has(pkpd.model("ketamine", structure={"clinical": "per_family"}), "clinical_rate_ratio")
    fields = {f.name: getattr(ect.core, f.name) for f in dataclasses.fields(ect.core)}
    with pytest.raises(ValueError, match="needs k_volume_transient"):
        type(ect.core)(**{**fields, "k_volume_transient": None})
    with pytest.raises(ValueError, match="is set but structure"):
        type(ect.core)(**{**fields, "structure": structures.resolve({"post_course": "one_pool", "clinical": "shared"})})


@pytest.mark.slow  # three models' compiles, ~20 s (python -m pytest -m slow)
def test_baseline_stays_a_fixed_point_in_every_alternative():
    alt = {item: c[1] for item, c in structures.IMPLEMENTED.items()}
    for name in ("fluoxetine", "itbs", "ect"):
        m = pkpd.model(name, structure=alt)
        traj = pkpd.simulate(m, pkpd.Schedule(), np.linspace(0, 24 * 10, 11))
        for r in ("bdnf", "spine_density", "hippocampal_volume", "synaptic_efficacy", "symptom_score"):
            assert np.all(np.asarray(traj[r]) == 1.0), (name, r)


def test_two_pool_at_equal_rates_is_the_one_pool_volume():
    s = pkpd.protocol("ect")
    t = np.linspace(0.0, float(s.session_start[-1]) + 24 * 120, 60)
    one = _run("ect", {"post_course": "one_pool"}, "hippocampal_volume", t, s)
    k = params.get(pkpd.model("ect"), "k_volume")
    two = _run("ect", {"post_course": "two_pool"}, "hippocampal_volume", t, s, k_volume_transient=k)
    assert one.max() > 1.005  # the course does move the volume
    assert _max_rel(two, one) < 1e-6
    fast = _run("ect", {"post_course": "two_pool"}, "hippocampal_volume", t, s, k_volume_transient=50 * k)
    assert _max_rel(fast, one) > 1e-3  # and the transient pool is not inert


def test_two_threshold_with_zero_weight_is_the_one_threshold_model():
    s = pkpd.protocol("itbs")
    t = np.linspace(0.0, 24 * 3, 200)
    one = _run("itbs", {"tbs": "one_threshold"}, "synaptic_efficacy", t, s)
    zero = _run("itbs", {"tbs": "two_threshold"}, "synaptic_efficacy", t, s, w_theta_slow=0.0)
    assert np.ptp(one) > 1e-3
    assert _max_rel(zero, one) < 1e-6
    heavy = _run("itbs", {"tbs": "two_threshold"}, "synaptic_efficacy", t, s, w_theta_slow=1.0)
    assert _max_rel(heavy, one) > 1e-4


def test_per_family_lag_at_ratio_one_is_the_shared_lag():
    s = pkpd.protocol("ect")
    t = np.linspace(0.0, 24 * 60, 80)
    shared = _run("ect", {"clinical": "shared"}, "symptom_score", t, s)
    fam = _run("ect", {"clinical": "per_family"}, "symptom_score", t, s, clinical_rate_ratio=1.0)
    assert _max_rel(fam, shared) < 1e-6
    slow = _run("ect", {"clinical": "per_family"}, "symptom_score", t, s, clinical_rate_ratio=0.01)
    assert _max_rel(slow, shared) > 1e-3


def test_two_stage_ssri_converges_to_one_stage_as_transcription_gets_fast():
    t = np.linspace(0.0, 24 * 28, 57)
    one = _run("fluoxetine", {"ssri": "one_stage"}, "bdnf", t)
    errs = [
        _max_rel(_run("fluoxetine", {"ssri": "two_stage"}, "bdnf", t, k_transcription=k), one) for k in (1e2, 1e3, 1e4)
    ]
    assert np.ptp(one) > 1e-3
    assert errs[2] < 1e-6
    # first-order convergence in 1 / k_transcription (the lag of the second stage)
    assert errs[0] / errs[1] == pytest.approx(10.0, rel=0.2)


def test_calibration_builds_models_in_its_own_structure():
    cal = Calibration(
        parameters=[], draws_z=np.zeros((1, 0)), map_z=np.zeros(0), info={"structure": {"ssri": "two_stage"}}
    )
    assert dict(cal.structure)["ssri"] == "two_stage"
    assert "transcription" in cal.model("fluoxetine").state_names
    assert "transcription" in cal.models("fluoxetine")[0].state_names
