import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import pkpd
from pkpd import observe


def test_likelihood_matches_hand_computation():
    err = observe.ErrorModel(proportional=0.1, additive=0.5, kind="combined")
    value, se, pred = np.array([10.0, -4.0]), np.array([1.0, np.nan]), np.array([9.0, -3.0])
    sd = np.sqrt(np.nan_to_num(se) ** 2 + (0.1 * np.abs(value)) ** 2 + 0.5**2)
    ll = observe.log_likelihood(jnp.asarray(pred), value, se, err)
    assert np.allclose(ll, norm.logpdf(value, pred, sd), rtol=1e-9)
    assert np.allclose(observe.ErrorModel(proportional=0.2).sd(jnp.asarray(value), jnp.asarray(se))[1], 0.8, rtol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        observe.ErrorModel(kind="multiplicative")


def test_schedule_for_protocol_options():
    s = observe.schedule_for("ect", "human", "placement=bl;sessions_per_week=3;sessions=6")
    assert s.n_sessions == 6
    k = observe.schedule_for("ketamine", "human", "dose_mg=10;route=iv")
    assert pkpd.ROUTES[k.dose_route[0]] == "iv" and k.dose_amount[0] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="free text"):
        observe.schedule_for("psilocybin", "human", "doses=15/25/30")
    with pytest.raises(ValueError, match="not supported"):
        observe.schedule_for("psilocybin", "human", "mood=good")


def test_predictions_follow_their_definitions():
    rows = pd.DataFrame(
        [
            dict(
                study_id="a",
                species="human",
                modality="psilocybin",
                readout="concentration",
                statistic="cmax",
                value=17.0,
                unit="ng/mL",
                citation="c",
                doi="d",
                quote="q",
                analyte="psilocin",
            ),
            dict(
                study_id="a",
                species="human",
                modality="psilocybin",
                readout="concentration",
                statistic="half_life",
                value=1.5,
                unit="h",
                citation="c",
                doi="d",
                quote="q",
                analyte="psilocin",
            ),
            dict(
                study_id="a",
                species="human",
                modality="psilocybin",
                readout="spine_density",
                statistic="percent_change",
                value=5.0,
                unit="%",
                time=24.0,
                time_unit="h",
                citation="c",
                doi="d",
                quote="q",
            ),
            dict(
                study_id="a",
                species="human",
                modality="psilocybin",
                readout="bdnf_serum",
                statistic="mean",
                value=5.0,
                unit="ng/mL",
                citation="c",
                doi="d",
                quote="q",
            ),
        ]
    )
    models = {}
    obs = observe.prepare("psilocybin", rows, lambda sp: models.setdefault(sp, pkpd.model("psilocybin", species=sp)))
    assert obs.n == 3 and len(obs.excluded) == 1 and "serum" in obs.excluded["reason"].iloc[0]
    pred = np.asarray(observe.predict(models, observe.ClinicalLink(), obs))
    t = np.linspace(0, 48, 48 * 60 + 1)
    traj = pkpd.simulate(models["human"], pkpd.protocol("psilocybin"), t)
    c = np.asarray(traj["concentration"]) * 1000
    assert pred[0] == pytest.approx(c.max(), rel=1e-3)
    m = models["human"]
    k = min(float(m.driver.pk.ka), float(m.driver.pk.cl / m.driver.pk.v))
    assert pred[1] == pytest.approx(np.log(2) / k, rel=0.05)  # terminal phase of a Bateman curve
    assert pred[2] == pytest.approx(100 * (float(np.interp(24.0, t, traj["spine_density"])) - 1), rel=1e-4)


def test_response_rate_threshold_model():
    link = observe.ClinicalLink(clinical_spread=0.2, remission_improvement=0.6)
    assert float(link.rate(0.5, 0.5)) == pytest.approx(50.0)
    assert float(link.rate(0.7, 0.5)) == pytest.approx(100 * norm.cdf(1.0))


@pytest.mark.parametrize("modality", ["psilocybin", "fluoxetine"])
def test_pk_only_rows_use_exact_pk_and_match_the_full_ode(modality, monkeypatch):
    # rows that read only concentrations/occupancy are predicted by the driver's exact PK view;
    # the full PK+PD integration must give the same numbers (psilocybin: dose_scale != 1;
    # fluoxetine: parent + metabolite, occupancy of both)
    import equinox as eqx

    from pkpd.fit import Problem

    pb = Problem(modality)
    views = [
        observe._pk_view(pb.models[g.species], {s["output"] for s in pb.obs.specs if s["group"] == gi})
        for gi, g in enumerate(pb.obs.groups)
    ]
    assert any(v is not None for v in views)
    assert all(not hasattr(v, "core") for v in views if v is not None)
    z = jnp.asarray([s.mu for s in pb.specs])
    exact = np.asarray(eqx.filter_jit(pb.predict)(z))
    monkeypatch.setattr(observe, "_pk_view", lambda model, used: None)
    ode = np.asarray(eqx.filter_jit(pb.predict)(z))
    assert np.all(np.isfinite(exact))
    np.testing.assert_allclose(exact, ode, rtol=1e-5)


def test_rows_of_one_design_share_a_group_and_predict_as_if_alone(monkeypatch):
    # "dose_mg=25" spells out psilocybin's default 25 mg: those rows are the same design as the
    # rows without options and are simulated once; the predictions must not change
    def row(options, time):
        return dict(
            study_id="a",
            species="human",
            modality="psilocybin",
            readout="spine_density",
            statistic="percent_change",
            value=5.0,
            unit="%",
            time=time,
            time_unit="h",
            citation="c",
            doi="d",
            quote="q",
            protocol_options=options,
        )

    rows = pd.DataFrame([row("", 24.0), row("dose_mg=25", 72.0), row("dose_mg=15", 24.0)])
    models = {}
    model_for = lambda sp: models.setdefault(sp, pkpd.model("psilocybin", species=sp))  # noqa: E731
    obs = observe.prepare("psilocybin", rows, model_for)
    assert len(obs.groups) == 2 and [s["group"] for s in obs.specs] == [0, 0, 1]
    assert observe.same_design(obs.groups[0].schedule, pkpd.protocol("psilocybin"))
    assert not observe.same_design(obs.groups[0].schedule, obs.groups[1].schedule)
    merged = np.asarray(observe.predict(models, observe.ClinicalLink(), obs))
    monkeypatch.setattr(observe, "same_design", lambda a, b: False)
    apart = observe.prepare("psilocybin", rows, model_for)
    assert len(apart.groups) == 3
    np.testing.assert_allclose(merged, np.asarray(observe.predict(models, observe.ClinicalLink(), apart)), rtol=1e-7)


def test_time_origin_maps_to_time_since_first_dose():
    # SNT: 10 sessions a day for 5 days; "4 weeks after treatment" counts from the end of the last session.
    s = observe.schedule_for("accelerated_itbs", "human", "")
    end = float(s.session_start[-1] + s.session_duration[-1])
    assert end > 4 * 24 and s.n_sessions == 50
    assert observe.time_since_first_dose(672.0, "end_of_course", s) == pytest.approx(end + 672.0)
    assert observe.time_since_first_dose(5.0, "first_dose", s) == 5.0
    assert observe.time_since_first_dose(1.0, "dose:11", s) == pytest.approx(float(s.session_start[10]) + 1.0)
    # two psilocybin doses a week apart: follow-up from session 2 starts at 168 h
    p = observe.schedule_for("psilocybin", "human", "doses=2;interval_h=168")
    assert observe.time_since_first_dose(730.0, "dose:2", p) == pytest.approx(168.0 + 730.0)
    assert observe.time_since_first_dose(24.0, "end_of_course", p) == pytest.approx(168.0 + 24.0)
    with pytest.raises(ValueError, match="'dose:3'.*only 2 doses"):
        observe.time_since_first_dose(1.0, "dose:3", p)
    with pytest.raises(ValueError, match="time_origin='whenever'"):
        observe.time_since_first_dose(1.0, "whenever", p)


def test_end_of_course_row_is_predicted_at_its_absolute_time():
    row = dict(
        study_id="snt",
        species="human",
        modality="accelerated_itbs",
        readout="clinical_score",
        statistic="percent_change",
        value=-50.0,
        unit="%",
        time="4",
        time_unit="week",
        citation="c",
        doi="d",
        quote="q",
    )
    rows = pd.DataFrame([{**row, "time_origin": "end_of_course"}, {**row, "time_origin": "first_dose"}])
    obs = observe.prepare("accelerated_itbs", rows, lambda sp: pkpd.model("accelerated_itbs", species=sp))
    s = obs.groups[0].schedule
    end = float(s.session_start[-1] + s.session_duration[-1])
    assert [sp["time"] for sp in obs.specs] == pytest.approx([end + 672.0, 672.0])
    times = obs.groups[0].times
    assert times[obs.specs[0]["index"]] == pytest.approx(end + 672.0)
