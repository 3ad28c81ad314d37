"""Numerical failure (issue 7): solver failures are loud (``pkpd.SolverError``) or, with
``throw=False``, flagged on the trajectory (``status``, ``num_steps``); and inputs much shorter
than the solver's steps are never stepped over."""

from __future__ import annotations

from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pkpd
from pkpd.schedule import ROUTES

WEEK = 168.0
INFUSION, IV = ROUTES.index("infusion"), ROUTES.index("iv")


class StiffPair(pkpd.Model):
    """x' = -K (x - y), y' = -y from x = y = 1: a fast mode (rate K) riding on a slow one (rate 1).

    Closed form: y = exp(-t), x = y + (exp(-t) - exp(-K t)) / (K - 1)."""

    k_fast: float
    state_names: ClassVar[tuple[str, ...]] = ("x", "y")

    def initial_state(self):
        return jnp.ones(2)

    def vector_field(self, t, y, rates, session):
        return jnp.stack([-self.k_fast * (y[0] - y[1]), -y[1]])

    def exact(self, t):
        k = self.k_fast
        return np.exp(-t) + (np.exp(-t) - np.exp(-k * t)) / (k - 1), np.exp(-t)


class Growth(pkpd.Model):
    """x' = rate x: overflows float64 once rate t > ~709."""

    rate: float
    state_names: ClassVar[tuple[str, ...]] = ("x",)

    def initial_state(self):
        return jnp.ones(1)

    def vector_field(self, t, y, rates, session):
        return self.rate * y


class InfusionAUC(pkpd.Model):
    """One-compartment IV model integrated by diffrax (not the exact path), with the AUC of
    concentration as a second state: AUC(inf) = dose / CL."""

    cl: float
    v: float
    state_names: ClassVar[tuple[str, ...]] = ("central", "auc")

    def dose(self, y, amounts):
        return y.at[0].add(amounts[IV])

    def vector_field(self, t, y, rates, session):
        return jnp.stack([rates[INFUSION] - self.cl / self.v * y[0], y[0] / self.v])

    def outputs(self, ys):
        return {"concentration": ys[..., 0] / self.v}


ORAL = pkpd.pk.OneCompartment(cl=10.0, v=50.0, ka=1.0)
DOSE = pkpd.Schedule.single_dose(100.0)


# --- maximum steps ---------------------------------------------------------------------------------


def test_max_steps_exhaustion_flags_only_the_failing_subject():
    # Subject 1 absorbs 10^4 times faster: with an explicit solver it needs ~8e4 steps, the others ~200.
    models = pkpd.stack([pkpd.pk.OneCompartment(cl=10.0, v=50.0, ka=ka) for ka in (1.0, 1e4, 0.5)])
    t = np.linspace(0.0, 48.0, 9)
    opts = dict(method="ode", solver=dfx.Tsit5(), max_steps=1000)
    with pytest.raises(
        pkpd.SolverError,
        match=r"maximum number of solver steps reached \(subjects \[1\]\)\. "
        r"Try: increase max_steps.*throw=False",
    ):
        pkpd.simulate_population(models, DOSE, t, **opts)
    pop = pkpd.simulate_population(models, DOSE, t, throw=False, **opts)
    assert np.asarray(pop.status).tolist() == [0, 1, 0] and not pop.ok
    steps = np.asarray(pop.num_steps)
    # accepted steps: the failing subject stopped at max_steps (accepted + rejected), the others finished
    assert 0 < steps[0] < steps[1] <= 1000 and 0 < steps[2] < steps[1]
    c = np.asarray(pop["concentration"])
    assert np.all(np.isfinite(c[[0, 2]]))


# --- stiffness ---------------------------------------------------------------------------------------


def test_stiff_system_exhausts_an_explicit_solver_but_not_the_default():
    m, t = StiffPair(k_fast=1e5), np.array([0.0, 0.5, 5.0, 20.0])
    # Tsit5 is limited by stability to steps of ~3/K: 20 h needs ~7e5 of them.
    with pytest.raises(pkpd.SolverError, match=r"maximum number of solver steps.*stiff default solver"):
        pkpd.simulate(m, pkpd.Schedule(), t, solver=dfx.Tsit5(), max_steps=2000)
    explicit = pkpd.simulate(m, pkpd.Schedule(), t, solver=dfx.Tsit5(), max_steps=2000, throw=False)
    assert int(explicit.status) == 1
    stiff = pkpd.simulate(m, pkpd.Schedule(), t, max_steps=2000)  # default Kvaerno5 (L-stable)
    assert stiff.ok and int(stiff.num_steps) < 500
    x_ref, y_ref = m.exact(t)
    assert np.allclose(stiff["x"], x_ref, rtol=1e-5) and np.allclose(stiff["y"], y_ref, rtol=1e-5)


def test_a_failed_segment_does_not_cost_max_steps_again_in_every_later_segment():
    # 20 daily doses cut the run into ~20 segments. Tsit5 exhausts max_steps in the first one
    # (stability limit ~3/K); the later segments of a failed solve must not each spend max_steps
    # too (under vmap one such lane held a whole batch of 256 for max_steps x segments).
    m, t = StiffPair(k_fast=1e5), np.linspace(0.0, 20 * 24.0, 41)
    sched = pkpd.Schedule.daily(0.0, 20, route="iv")
    traj = pkpd.simulate(m, sched, t, solver=dfx.Tsit5(), max_steps=2000, throw=False)
    assert int(traj.status) == 1 and not traj.ok
    assert int(traj.num_steps) < 2000 + 20 * 50, int(traj.num_steps)
    # a solve that does not fail is unaffected: the same schedule with the stiff default solver
    ok = pkpd.simulate(m, sched, t, max_steps=2000)
    x_ref, y_ref = m.exact(t)
    assert (
        ok.ok
        and np.allclose(ok["x"], x_ref, rtol=1e-5, atol=1e-12)
        and np.allclose(ok["y"], y_ref, rtol=1e-5, atol=1e-12)
    )


def test_overflow_blow_up_is_reported_not_returned_as_ok():
    t = np.array([0.0, 0.5, 10.0])  # exp(1000 * 10) overflows float64
    with pytest.raises(pkpd.SolverError, match="throw=False"):
        pkpd.simulate(Growth(rate=1000.0), pkpd.Schedule(), t, solver=dfx.Tsit5(), max_steps=4096)
    traj = pkpd.simulate(Growth(rate=1000.0), pkpd.Schedule(), t, solver=dfx.Tsit5(), max_steps=4096, throw=False)
    assert int(traj.status) != 0 and not traj.ok
    assert not np.isfinite(np.asarray(traj["x"])[-1])


@pytest.mark.xfail(
    strict=True,
    reason="simulate.solve labels an overflow that exhausts the steps as status 1 "
    "('maximum number of solver steps', advice: increase max_steps) instead of 2 (non-finite "
    "state); fix in simulate.py: let a non-finite save value take precedence (code 2)",
)
def test_overflow_blow_up_is_labelled_non_finite():
    traj = pkpd.simulate(
        Growth(rate=1000.0), pkpd.Schedule(), [0.0, 0.5, 10.0], solver=dfx.Tsit5(), max_steps=4096, throw=False
    )
    assert int(traj.status) == 2


# --- non-finite parameters -----------------------------------------------------------------------------
# Constructors reject NaN/inf parameters (see test_bad_input.py); they can still arrive through
# transformations that skip validation (eqx.tree_at, a traced value, exp overflow in a fit).


def test_non_finite_parameter_exact_path():
    bad = eqx.tree_at(lambda m: m.cl, ORAL, jnp.nan)
    with pytest.raises(pkpd.SolverError, match=r"non-finite.*check the parameters"):
        pkpd.simulate(bad, DOSE, [0.0, 1.0])
    traj = pkpd.simulate(bad, DOSE, [0.0, 1.0], throw=False)
    assert int(traj.status) == 2 and not traj.ok


def test_non_finite_parameter_ode_path():
    bad = eqx.tree_at(lambda m: m.k_fast, StiffPair(k_fast=10.0), jnp.nan)
    t = np.array([0.0, 0.5, 10.0])
    with pytest.raises(pkpd.SolverError, match="throw=False"):
        pkpd.simulate(bad, pkpd.Schedule(), t, max_steps=64)
    traj = pkpd.simulate(bad, pkpd.Schedule(), t, max_steps=64, throw=False)
    assert int(traj.status) != 0 and not traj.ok
    assert int(traj.num_steps) == 0  # every step was rejected
    assert not np.any(np.isfinite(np.asarray(traj["x"])[1:]))


def test_non_finite_parameter_ode_path_is_named():
    bad = eqx.tree_at(lambda m: m.k_fast, StiffPair(k_fast=10.0), jnp.nan)
    with pytest.raises(pkpd.SolverError, match="non-finite"):
        pkpd.simulate(bad, pkpd.Schedule(), np.array([0.0, 0.5, 10.0]), max_steps=64)


def test_non_finite_parameter_in_a_population_and_under_jit():
    pop = pkpd.stack([ORAL, ORAL, ORAL])
    pop = eqx.tree_at(lambda m: m.cl, pop, pop.cl.at[1].set(jnp.nan))
    t = np.linspace(0.0, 24.0, 5)
    with pytest.raises(pkpd.SolverError, match=r"subjects \[1\]"):
        pkpd.simulate_population(pop, DOSE, t)
    out = pkpd.simulate_population(pop, DOSE, t, throw=False)
    assert np.asarray(out.status).tolist() == [0, 2, 0]
    c = np.asarray(out["concentration"])
    assert np.all(np.isfinite(c[[0, 2]])) and np.allclose(c[0], pkpd.simulate(ORAL, DOSE, t)["concentration"])

    # Inside a user's jit nothing can raise: the status is the only signal, and it is set.
    @jax.jit
    def conc_and_status(cl):
        traj = pkpd.simulate(pkpd.pk.OneCompartment(cl=cl, v=50.0, ka=1.0), DOSE, t)
        return traj["concentration"], traj.status

    _, status = conc_and_status(jnp.nan)
    assert int(status) == 2
    assert int(conc_and_status(10.0)[1]) == 0


# --- short inputs inside long runs are never stepped over ----------------------------------------------


def test_one_minute_infusion_in_twelve_weeks_gives_auc_dose_over_cl():
    m = InfusionAUC(cl=5.0, v=20.0)
    s = pkpd.Schedule.infusion(10.0, 1.0, at=6 * WEEK * 60, time_unit="min")  # 10 mg over 1 min at week 6
    t = np.array([0.0, 6 * WEEK - 1.0, 12 * WEEK])  # no save time near the infusion
    traj = pkpd.simulate(m, s, t)  # diffrax (Kvaerno5), free step sizes
    assert float(traj["auc"][1]) == 0.0
    assert float(traj["auc"][-1]) == pytest.approx(10.0 / 5.0, rel=1e-6)  # AUC = dose / CL
    # The solver's mean step is hours long, 100s of times the infusion's duration.
    assert 12 * WEEK / int(traj.num_steps) > 100 / 60
    # Without the infusion nothing happens.
    assert float(pkpd.simulate(m, pkpd.Schedule.infusion(0.0, 1.0, at=6 * WEEK), t)["auc"][-1]) == 0.0


def test_three_minute_itbs_session_in_twelve_weeks_acts_as_in_a_short_run():
    m = pkpd.model("itbs")
    session = pkpd.protocol("itbs", sessions=1)  # 600 pulses in 190 s
    sham = pkpd.protocol("itbs", sessions=1, intensity=0.0)  # the same session without stimulation
    after = session.end_time + 5 / 60  # 5 min after the session (the meta-analytic after-effect)
    t_long = np.array([0.0, 6 * WEEK + after, 12 * WEEK])  # no save time inside the session
    short = pkpd.simulate(m, session, t_long - 6 * WEEK * np.array([0.0, 1.0, 1.0]))
    long_ = pkpd.simulate(m, session.shift(6 * WEEK), t_long)
    none = pkpd.simulate(m, sham.shift(6 * WEEK), t_long)
    for r in ("synaptic_efficacy", "bdnf", "threshold"):
        # the baseline is a fixed point, so the session acts the same whenever it is given
        assert float(long_[r][1]) == pytest.approx(float(short[r][1]), rel=1e-6), r
        assert float(long_[r][2]) == pytest.approx(float(short[r][2]), rel=1e-6), r
        assert float(none[r][1]) == float(none[r][2]) == 1.0, r
    assert float(long_["synaptic_efficacy"][1]) - 1.0 > 0.2  # the iTBS after-effect (~ +35 %, Wischnewski 2015)
    assert float(long_["synaptic_efficacy"][2]) != 1.0  # and it leaves a trace 6 weeks later
