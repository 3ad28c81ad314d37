"""Simulated PK against closed-form solutions (relative error <= 1e-6 at every sampled time)."""

import numpy as np
import pytest
from conftest import one_cmt_oral, rel_err

import pkpd

TOL = 1e-6
# "auto" propagates linear PK exactly (matrix exponentials); "ode" runs the diffrax path that every
# non-linear model uses, with its default stiff solver and tolerances.
METHODS = pytest.mark.parametrize("method", ["auto", "ode"])


@METHODS
def test_contract_three_oral_doses(oral_model, method):
    s = pkpd.Schedule.doses(times=[0.0, 24.0, 48.0], amounts=[100.0, 100.0, 100.0], route="oral")
    times = np.linspace(0.0, 72.0, 145)
    c = np.asarray(pkpd.simulate(oral_model, s, times=times, method=method)["concentration"])
    assert c.shape == (145,)
    ref = one_cmt_oral(times, [0, 24, 48], [100] * 3, 10.0, 50.0, 1.0)
    assert np.max(rel_err(c, ref)) <= TOL


@METHODS
def test_just_before_and_after_doses(oral_model, method):
    # Right-continuous convention: at a dose time the state is post-dose (the depot jumped).
    s = pkpd.Schedule.doses([0.0, 24.0], [100.0, 100.0], route="oral")
    eps = 1e-6
    times = np.array([24.0 - eps, 24.0, 24.0 + eps, 30.0])
    traj = pkpd.simulate(oral_model, s, times, method=method)
    depot = np.asarray(traj["depot"])
    assert depot[1] - depot[0] == pytest.approx(100.0, rel=1e-6)
    ref = one_cmt_oral(times, [0, 24], [100, 100], 10.0, 50.0, 1.0)
    assert np.max(rel_err(traj["concentration"], ref)) <= TOL


@METHODS
def test_iv_bolus_one_compartment(method):
    m = pkpd.pk.OneCompartment(cl=5.0, v=20.0)
    s = pkpd.Schedule.single_dose(50.0, route="iv")
    t = np.linspace(0, 48, 97)
    ref = 50.0 / 20.0 * np.exp(-0.25 * t)
    assert np.max(rel_err(pkpd.simulate(m, s, t, method=method)["concentration"], ref)) <= TOL


@METHODS
def test_infusion_one_compartment(method):
    cl, v, amt, dur = 5.0, 20.0, 60.0, 2.0
    k, r = cl / v, amt / dur
    m = pkpd.pk.OneCompartment(cl=cl, v=v)
    s = pkpd.Schedule.infusion(amt, dur, at=1.0)
    t = np.concatenate([np.linspace(0, 12, 121), [1.0 + dur - 1e-7, 1.0 + dur + 1e-7]])
    t.sort()
    during = np.clip(t - 1.0, 0, dur)
    ref = r / cl * (1 - np.exp(-k * during)) * np.exp(-k * np.clip(t - 1.0 - dur, 0, None))
    c = np.asarray(pkpd.simulate(m, s, t, method=method)["concentration"])
    assert np.all(c[t <= 1.0] == 0.0)
    mask = t > 1.0
    assert np.max(rel_err(c[mask], ref[mask])) <= TOL


@pytest.mark.parametrize("method", ["auto", "ode"])
def test_short_infusion_not_skipped_in_long_run(method):
    # A 1-minute infusion inside 12 weeks: declared boundaries make it exact (NOTES: a smooth input
    # without declared jumps was stepped over entirely).
    m = pkpd.pk.OneCompartment(cl=5.0, v=20.0)
    s = pkpd.Schedule.infusion(10.0, 1.0, at=1000.0, time_unit="min") + pkpd.Schedule.single_dose(0.0, "iv")
    t = np.array([0.0, 16.7, 17.0, 1008.0, 24.0 * 84])
    traj = pkpd.simulate(m, s, t, method=method)
    c = np.asarray(traj["concentration"])
    k, dur = 0.25, 1 / 60
    t_end = 1000 / 60 + dur
    ref17 = 10 / dur / 5.0 * (1 - np.exp(-k * dur)) * np.exp(-k * (17.0 - t_end))
    assert c[0] == 0.0
    assert c[2] == pytest.approx(ref17, rel=TOL)


@METHODS
def test_repeated_oral_with_lag_and_bioavailability(method):
    m = pkpd.pk.OneCompartment(cl=3.0, v=40.0, ka=0.8, f=0.6, lag=0.5)
    s = pkpd.Schedule.repeated(20.0, every=12.0, n=10)
    t = np.linspace(0, 150, 301)
    ref = one_cmt_oral(t, 12.0 * np.arange(10), [20.0] * 10, 3.0, 40.0, 0.8, f=0.6, lag=0.5)
    c = np.asarray(pkpd.simulate(m, s, t, method=method)["concentration"])
    assert np.all(c[t < 0.5] == 0.0)
    assert np.max(rel_err(c[t >= 0.5], ref[t >= 0.5])) <= TOL


@METHODS
def test_two_compartment_iv_biexponential(method):
    cl, v1, q, v2, dose = 4.0, 10.0, 6.0, 30.0, 100.0
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s_ = k10 + k12 + k21
    alpha = (s_ + np.sqrt(s_**2 - 4 * k10 * k21)) / 2
    beta = (s_ - np.sqrt(s_**2 - 4 * k10 * k21)) / 2
    a = dose / v1 * (alpha - k21) / (alpha - beta)
    b = dose / v1 * (k21 - beta) / (alpha - beta)
    t = np.linspace(0, 72, 145)
    ref = a * np.exp(-alpha * t) + b * np.exp(-beta * t)
    m = pkpd.pk.TwoCompartment(cl=cl, v1=v1, q=q, v2=v2)
    c = pkpd.simulate(m, pkpd.Schedule.single_dose(dose, "iv"), t, method=method)["concentration"]
    assert np.max(rel_err(c, ref)) <= TOL


@METHODS
def test_parent_metabolite_mass_balance(method):
    # With fm = 1 and a very slow metabolite, total parent-equivalent amount lost only through
    # metabolite clearance: d(total)/dt = -cl_m/v_m * metabolite.
    m = pkpd.pk.ParentMetabolite(cl=10.0, v=50.0, ka=1.0, fm=1.0, cl_m=1.0, v_m=100.0)
    t = np.linspace(0, 200, 401)
    traj = pkpd.simulate(m, pkpd.Schedule.single_dose(100.0), t, method=method)
    total = np.asarray(traj["depot"] + traj["central"] + traj["metabolite"])
    lost = 100.0 - total
    integral = (
        np.concatenate(
            [
                [0],
                np.cumsum(
                    np.diff(t) * 0.5 * (np.asarray(traj["metabolite"])[1:] + np.asarray(traj["metabolite"])[:-1])
                ),
            ]
        )
        * 0.01
    )
    # trapezoid quadrature on a 0.5 h grid: error ~1e-3 of the 100 mg dose
    assert np.max(np.abs(lost - integral)) < 5e-3
    # metabolite closed form: Bateman chain of three exponentials
    ka, k, km = 1.0, 0.2, 0.01
    c_ref = (
        100
        * ka
        * k
        * (
            np.exp(-ka * t) / ((k - ka) * (km - ka))
            + np.exp(-k * t) / ((ka - k) * (km - k))
            + np.exp(-km * t) / ((ka - km) * (k - km))
        )
    )
    assert np.max(rel_err(traj["metabolite"][1:], c_ref[1:])) <= TOL


def test_accumulation_ratio_at_steady_state():
    # After >= 7 half-lives, the trough ratio to the first-dose trough approaches 1/(1 - exp(-k tau)).
    cl, v, tau = 5.0, 50.0, 12.0
    k = cl / v
    m = pkpd.pk.OneCompartment(cl=cl, v=v)
    n = 20  # 20 * 12 h = 240 h = 34 half-lives
    s = pkpd.Schedule.repeated(100.0, every=tau, n=n, route="iv")
    t = np.array([tau - 1e-9, n * tau - 1e-9])
    c = np.asarray(pkpd.simulate(m, s, t)["concentration"])
    assert c[1] / c[0] == pytest.approx(1 / (1 - np.exp(-k * tau)), rel=1e-6)


@pytest.mark.parametrize("route,kwargs", [("oral", {}), ("iv", {}), ("infusion", {"duration": 2.0})])
def test_ss_dose_equals_long_run_profile(route, kwargs):
    m = pkpd.pk.TwoCompartment(cl=4.0, v1=10.0, q=6.0, v2=30.0, ka=0.7, f=0.8, lag=0.25)
    tau = 24.0
    long_run = pkpd.Schedule.repeated(100.0, every=tau, n=60, route=route, **kwargs)
    ss = pkpd.Schedule.repeated(100.0, every=tau, n=1, route=route, ss=True, **kwargs).shift(59 * tau)
    t = 59 * tau + np.linspace(0.0, tau, 49)
    c_long = np.asarray(pkpd.simulate(m, long_run, t)["concentration"])
    c_ss = np.asarray(pkpd.simulate(m, ss, t)["concentration"])
    assert np.max(rel_err(c_ss, c_long)) <= 1e-6
