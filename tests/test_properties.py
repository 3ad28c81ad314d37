"""Property-based tests (issue 7, hypothesis): invariants of simulation that hold for any valid
parameters and schedules.

Shapes are kept fixed (number of doses, save times, subjects) so that every example reuses the
same compiled function: each new shape costs seconds of JIT.
"""

from __future__ import annotations

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import pkpd
from pkpd import Schedule

PROPS = settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
T = np.linspace(0.0, 96.0, 49)  # h


def log_uniform(lo, hi):
    return st.floats(np.log(lo), np.log(hi)).map(np.exp).map(float)


clearance, volume, absorption = log_uniform(0.5, 50.0), log_uniform(5.0, 500.0), log_uniform(0.1, 10.0)
bioavailability = st.floats(0.05, 1.0)
# Dose times on a 5-min grid: times closer than 1e-9 h but not equal hit the known snapping bug
# (test_superposition_with_coincident_and_round_off_dose_times below).
dose_times = st.lists(st.integers(0, 72 * 12).map(lambda k: k / 12.0), min_size=3, max_size=3)
amounts = st.lists(st.floats(0.0, 500.0), min_size=3, max_size=3)
routes = st.lists(st.sampled_from(["oral", "iv"]), min_size=3, max_size=3)


@st.composite
def one_compartment(draw):
    return pkpd.pk.OneCompartment(cl=draw(clearance), v=draw(volume), ka=draw(absorption), f=draw(bioavailability))


@st.composite
def two_compartment(draw):
    return pkpd.pk.TwoCompartment(
        cl=draw(clearance),
        v1=draw(volume),
        q=draw(clearance),
        v2=draw(volume),
        ka=draw(absorption),
        f=draw(bioavailability),
    )


@st.composite
def schedules(draw):
    """Three doses, oral or IV, at any times in the first 72 h."""
    return Schedule.doses(draw(dose_times), draw(amounts), draw(routes))


def close(a, b, rtol, scale):
    a, b = np.asarray(a), np.asarray(b)
    return np.allclose(a, b, rtol=rtol, atol=rtol * max(scale, 1e-300))


# --- non-negativity -------------------------------------------------------------------------------


@PROPS
@given(model=two_compartment(), schedule=schedules())
def test_amounts_and_concentrations_are_non_negative(model, schedule):
    traj = pkpd.simulate(model, schedule, T)
    total = float(np.sum(schedule.dose_amount))
    for name in ("depot", "central", "peripheral"):
        assert np.all(np.asarray(traj[name]) >= -1e-12 * total), name
    assert np.all(np.asarray(traj["concentration"]) >= -1e-12 * total / float(model.v1))
    # mass balance: what is in the body never exceeds what was given
    amount = np.asarray(traj["depot"] + traj["central"] + traj["peripheral"])
    assert np.all(amount <= total * (1 + 1e-9))


PSILOCYBIN = pkpd.model("psilocybin")
PSILO_T = np.linspace(0.0, 24.0 * 28, 57)


@settings(PROPS, max_examples=8)
@given(doses_mg=st.lists(st.floats(0.0, 50.0), min_size=3, max_size=3))
def test_plasticity_model_concentration_occupancy_and_spines_stay_in_range(doses_mg):
    # psilocybin on three weekly sessions of any size (0-50 mg), integrated by the stiff ODE solver
    schedule = Schedule.doses([0.0, 168.0, 336.0], doses_mg)
    traj = pkpd.simulate(PSILOCYBIN, schedule, PSILO_T)
    c = np.asarray(traj["concentration"])
    # non-negative to the solver's absolute tolerance (atol 1e-12 mg/L): doses near zero (e.g. 1e-10 mg)
    # leave concentrations whose round-off is larger than any relative bound
    assert np.all(c >= -(1e-9 * c.max() + 1e-12))
    occ = np.asarray(traj["occupancy"])
    assert np.all((occ >= 0.0) & (occ <= 1.0))
    for r in ("spine_density", "bdnf", "synaptic_efficacy"):
        y = np.asarray(traj[r])
        assert np.all(np.isfinite(y)) and np.all(y > 0), r


# --- linearity ------------------------------------------------------------------------------------


@PROPS
@given(model=two_compartment(), a=schedules(), b=schedules())
def test_linear_pk_superposition(model, a, b):
    both = pkpd.simulate(model, a + b, T)
    ya, yb = pkpd.simulate(model, a, T), pkpd.simulate(model, b, T)
    scale = float(np.max(np.abs(both.states)))
    assert close(both.states, ya.states + yb.states, 1e-9, scale)


def test_superposition_with_coincident_and_round_off_dose_times():
    m = pkpd.pk.OneCompartment(cl=5.0, v=20.0)
    late = Schedule.doses([0.1], [100.0], "iv", time_unit="d")  # stored as 2.4000000000000004 h
    same = Schedule.doses([2.4, 2.4], [10.0, 10.0], "iv")  # two doses at one time
    t = [0.0, 2.4]
    alone = float(pkpd.simulate(m, late, t)["central"][1]) + float(pkpd.simulate(m, same, t)["central"][1])
    assert alone == pytest.approx(120.0)
    assert float(pkpd.simulate(m, late + same, t)["central"][1]) == pytest.approx(alone)


@PROPS
@given(model=one_compartment(), schedule=schedules(), factor=st.floats(0.0, 20.0))
def test_dose_proportionality(model, schedule, factor):
    base = pkpd.simulate(model, schedule, T)
    scaled = pkpd.simulate(model, schedule.scale(factor), T)
    scale = float(np.max(np.abs(base.states))) * max(factor, 1.0)
    assert close(scaled.states, factor * base.states, 1e-10, scale)


# --- time invariance --------------------------------------------------------------------------------


@PROPS
@given(model=one_compartment(), schedule=schedules(), dt=st.floats(0.0, 1000.0))
@pytest.mark.parametrize("method", ["auto", "ode"])
def test_shifting_the_schedule_shifts_the_trajectory(model, schedule, dt, method):
    opts = dict(method=method) if method == "auto" else dict(method="ode", solver=dfx.Tsit5())
    ref = pkpd.simulate(model, schedule, T, **opts)
    moved = pkpd.simulate(model, schedule.shift(dt), T + dt, **opts)
    scale = float(np.max(np.abs(ref.states)))
    assert close(moved.states, ref.states, 1e-9 if method == "auto" else 1e-5, scale)


# --- transformations: vmap and jit ------------------------------------------------------------------

N_SUBJECTS = 4


@PROPS
@given(
    models=st.lists(one_compartment(), min_size=N_SUBJECTS, max_size=N_SUBJECTS),
    subject_schedules=st.lists(schedules(), min_size=N_SUBJECTS, max_size=N_SUBJECTS),
)
def test_population_equals_a_loop_of_simulate(models, subject_schedules):
    pop = pkpd.simulate_population(pkpd.stack(models), subject_schedules, T)
    assert np.shape(pop.states) == (N_SUBJECTS, T.size, 2)
    for i, (m, s) in enumerate(zip(models, subject_schedules)):
        one = pkpd.simulate(m, s, T)
        assert close(pop.states[i], one.states, 1e-12, float(np.max(np.abs(one.states)))), i
        assert np.allclose(pop["concentration"][i], one["concentration"], rtol=1e-12, atol=1e-300)


FIXED = Schedule.doses([0.0, 12.0, 30.0], [100.0, 50.0, 80.0], ["oral", "iv", "oral"])


def _conc(cl, v, ka, method):
    opts = dict(method=method) if method == "auto" else dict(method="ode", solver=dfx.Tsit5())
    return pkpd.simulate(pkpd.pk.OneCompartment(cl=cl, v=v, ka=ka), FIXED, T, **opts)["concentration"]


_JITTED = {m: jax.jit(lambda cl, v, ka, m=m: _conc(cl, v, ka, m)) for m in ("auto", "ode")}


@PROPS
@given(cl=clearance, v=volume, ka=absorption)
@pytest.mark.parametrize("method", ["auto", "ode"])
def test_jit_equals_no_jit(cl, v, ka, method):
    eager = np.asarray(_conc(cl, v, ka, method))
    jitted = np.asarray(_JITTED[method](jnp.float64(cl), jnp.float64(v), jnp.float64(ka)))
    assert close(jitted, eager, 1e-12, float(np.max(eager)))


# --- steady state -----------------------------------------------------------------------------------

N_DOSES = 40


@PROPS
@given(
    tau=st.floats(6.0, 48.0),
    k_tau=st.floats(np.log(2.0), 10 * np.log(2.0)),
    v=volume,
    ka_tau=st.floats(1.0, 50.0),
    route=st.sampled_from(["oral", "iv"]),
    amount=st.floats(1.0, 500.0),
)
def test_long_repeated_dosing_reaches_the_ss_profile(tau, k_tau, v, ka_tau, route, amount):
    # 1 to 10 half-lives per interval and 40 doses: the 40th interval is within exp(-27) of steady state
    m = pkpd.pk.OneCompartment(cl=k_tau / tau * v, v=v, ka=ka_tau / tau, lag=0.25)
    long_run = Schedule.repeated(amount, every=tau, n=N_DOSES, route=route)
    ss = Schedule.repeated(amount, every=tau, n=1, route=route, ss=True).shift((N_DOSES - 1) * tau)
    t = (N_DOSES - 1) * tau + np.linspace(0.0, tau, 25)
    c_long = np.asarray(pkpd.simulate(m, long_run, t)["concentration"])
    c_ss = np.asarray(pkpd.simulate(m, ss, t)["concentration"])
    assert close(c_ss, c_long, 1e-7, float(np.max(c_long)))
