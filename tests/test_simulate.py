import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import one_cmt_oral

import pkpd


def _loss(log_params, method):
    cl, v, ka = jnp.exp(log_params)
    m = pkpd.pk.OneCompartment(cl=cl, v=v, ka=ka)
    s = pkpd.Schedule.repeated(100.0, every=24.0, n=3)
    traj = pkpd.simulate(m, s, np.linspace(0, 72, 25), method=method)
    return jnp.sum(traj["concentration"] ** 2)


@pytest.mark.parametrize("method", ["auto", "ode"])
def test_grad_matches_finite_differences(method):
    x = jnp.log(jnp.array([10.0, 50.0, 1.0]))
    g = jax.grad(_loss)(x, method)
    h = 1e-5
    fd = np.array([(_loss(x.at[i].add(h), method) - _loss(x.at[i].add(-h), method)) / (2 * h) for i in range(3)])
    assert np.allclose(g, fd, rtol=1e-4, atol=1e-8)


def test_forward_mode_jacobian():
    def conc(log_cl):
        m = pkpd.pk.OneCompartment(cl=jnp.exp(log_cl), v=50.0, ka=1.0)
        return pkpd.simulate(
            m, pkpd.Schedule.single_dose(100.0), np.array([2.0, 10.0]), method="ode", adjoint=dfx.ForwardMode()
        )["concentration"]

    j = jax.jacfwd(conc)(jnp.log(10.0))
    h = 1e-6
    fd = (conc(jnp.log(10.0) + h) - conc(jnp.log(10.0) - h)) / (2 * h)
    assert np.allclose(j, fd, rtol=1e-5)


def test_vmap_over_parameters_equals_loop():
    rng = np.random.default_rng(0)
    cls = 10.0 * np.exp(0.3 * rng.standard_normal(100))
    s = pkpd.Schedule.daily(100.0, days=5)
    t = np.linspace(0, 120, 61)

    def conc(cl):
        return pkpd.simulate(pkpd.pk.OneCompartment(cl=cl, v=50.0, ka=1.0), s, t)["concentration"]

    batched = jax.vmap(conc)(jnp.asarray(cls))
    loop = np.stack([np.asarray(conc(c)) for c in cls[:10]])
    assert np.allclose(batched[:10], loop, rtol=1e-12, atol=1e-14)
    ref = np.stack([one_cmt_oral(t, np.arange(5) * 24.0, [100.0] * 5, c, 50.0, 1.0) for c in cls])
    assert np.allclose(batched, ref, rtol=1e-8)


def test_population_with_schedules_of_different_lengths():
    rng = np.random.default_rng(1)
    n = 100
    models = pkpd.stack(
        [pkpd.pk.OneCompartment(cl=float(c), v=50.0, ka=1.0) for c in 10 * np.exp(0.2 * rng.standard_normal(n))]
    )
    schedules = [pkpd.Schedule.daily(100.0, days=1 + i % 7) for i in range(n)]
    t = np.linspace(0, 24 * 8, 97)
    pop = pkpd.simulate_population(models, schedules, t, method="ode", solver=dfx.Tsit5())
    assert pop["concentration"].shape == (n, 97)
    for i in (0, 3, 50, 99):
        single = pkpd.simulate(
            pkpd.pk.OneCompartment(cl=float(models.cl[i]), v=50.0, ka=1.0),
            schedules[i],
            t,
            method="ode",
            solver=dfx.Tsit5(),
        )
        assert np.allclose(pop["concentration"][i], single["concentration"], rtol=1e-10, atol=1e-14)
    df = pop.to_pandas()
    assert set(df.columns) >= {"subject", "time_h", "concentration"} and len(df) == n * 97


def test_population_padded_to_more_segments_is_unchanged_and_shares_one_compile():
    """``n_segments`` pads the table with zero-length segments: the same states, and a single dose
    and a 5-day course padded to the same count reuse one compiled solver."""
    from pkpd.simulate import _POPULATION

    models = pkpd.stack([pkpd.pk.OneCompartment(cl=c, v=50.0, ka=1.0) for c in (8.0, 12.0)])
    t = np.linspace(0, 24 * 6, 25)
    opts = dict(method="ode", solver=dfx.Bosh3(), rtol=1e-7, atol=1e-10, devices=1)
    one, course = pkpd.Schedule.single_dose(100.0), pkpd.Schedule.daily(100.0, days=5)
    a = pkpd.simulate_population(models, one, t, **opts)
    b = pkpd.simulate_population(models, one, t, n_segments=40, **opts)
    np.testing.assert_array_equal(np.asarray(a.states), np.asarray(b.states))
    fn = [f for k, f in _POPULATION.items() if dict(k[2])["solver"] == opts["solver"] and dict(k[2])["rtol"] == 1e-7]
    assert len(fn) == 1
    before = fn[0]._cached._cache_size()
    c = pkpd.simulate_population(models, course, t, n_segments=40, **opts)  # 64 segments, as b
    assert fn[0]._cached._cache_size() == before
    ref = pkpd.simulate_population(models, course, t, **opts)
    np.testing.assert_array_equal(np.asarray(c.states), np.asarray(ref.states))
    with pytest.raises(ValueError, match="n_segments=0"):
        pkpd.simulate_population(models, one, t, n_segments=0, **opts)


def test_trajectory_names_and_errors(oral_model):
    traj = pkpd.simulate(oral_model, pkpd.Schedule.single_dose(100.0), [0.0, 1.0])
    assert traj.names == ("depot", "central", "concentration")
    assert traj.units["concentration"] == "mg/L"
    assert list(traj.to_pandas().columns) == ["time_h", "depot", "central", "concentration"]
    with pytest.raises(KeyError, match="spine_density"):
        traj["spine_density"]


def test_observation_at_dose_time_is_post_dose(oral_model):
    traj = pkpd.simulate(oral_model, pkpd.Schedule.single_dose(100.0, at=5.0), [5.0])
    assert float(traj["depot"][0]) == pytest.approx(100.0)


def test_max_steps_raises_clear_error(oral_model):
    with pytest.raises(pkpd.SolverError, match="maximum number of solver steps"):
        pkpd.simulate(oral_model, pkpd.Schedule.single_dose(100.0), [0.0, 500.0], method="ode", max_steps=3)
    traj = pkpd.simulate(
        oral_model, pkpd.Schedule.single_dose(100.0), [0.0, 500.0], method="ode", max_steps=3, throw=False
    )
    assert int(traj.status) == 1 and not traj.ok


def test_non_finite_state_raises():
    class Blowup(pkpd.Model):
        rate: float
        state_names = ("x",)

        def initial_state(self):
            return jnp.ones(1)

        def vector_field(self, t, y, rates, session):
            return self.rate * y**2  # finite-time blow-up at t = 1 / rate

    with pytest.raises(pkpd.SolverError):
        pkpd.simulate(Blowup(rate=1.0), pkpd.Schedule(), [0.0, 2.0], max_steps=2000)


@pytest.mark.parametrize(
    "times,err",
    [
        ([], ValueError),
        ([0.0, np.nan], ValueError),
        ([1.0, 0.0], ValueError),
        ([[0.0, 1.0]], ValueError),
        ("abc", TypeError),
    ],
)
def test_bad_times(oral_model, times, err):
    with pytest.raises(err, match="times"):
        pkpd.simulate(oral_model, pkpd.Schedule.single_dose(1.0), times)


def test_route_the_model_cannot_take():
    with pytest.raises(ValueError, match="cannot take route 'oral'"):
        pkpd.simulate(pkpd.pk.OneCompartment(cl=1.0, v=1.0), pkpd.Schedule.single_dose(1.0, "oral"), [0.0, 1.0])


def test_unit_conversion_and_per_kg_mismatch(oral_model):
    t = np.linspace(0, 24, 13)
    mg = pkpd.simulate(oral_model, pkpd.Schedule.single_dose(100.0, unit="mg"), t)["concentration"]
    ug = pkpd.simulate(oral_model, pkpd.Schedule.single_dose(100_000.0, unit="ug"), t)["concentration"]
    assert np.allclose(mg, ug, rtol=1e-12)
    with pytest.raises(ValueError, match="per kilogram"):
        pkpd.simulate(oral_model, pkpd.Schedule.single_dose(1.0, unit="mg/kg"), t)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(cl=-1.0, v=1.0), "cl"),
        (dict(cl=1.0, v=0.0), "v"),
        (dict(cl=1.0, v=1.0, ka=1.0, f=1.5), "f"),
        (dict(cl=1.0, v=1.0, ka=1.0, f=0.0), "f"),
        (dict(cl=1.0, v=1.0, ka=np.nan), "ka"),
        (dict(cl=1.0, v=1.0, lag=-1.0), "lag"),
    ],
)
def test_pk_parameter_domains(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pkpd.pk.OneCompartment(**kwargs)


def test_schedules_and_times_do_not_recompile(oral_model):
    from pkpd.simulate import _COMPILED

    t1, t2 = np.linspace(0, 48, 49), np.linspace(0, 72, 49)
    pkpd.simulate(oral_model, pkpd.Schedule.daily(1.0, days=2), t1)
    n = len(_COMPILED)
    fn = next(iter(_COMPILED.values()))
    size = fn._cached._cache_size() if hasattr(fn, "_cached") else None
    pkpd.simulate(oral_model, pkpd.Schedule.daily(2.0, days=3), t2)
    assert len(_COMPILED) == n
    if size is not None:
        assert fn._cached._cache_size() == size


# --- regressions from the code review ---------------------------------------------------------


def test_events_after_last_save_time_are_ignored():
    m = pkpd.pk.OneCompartment(cl=5.0, v=20.0, ka=1.0)
    s = pkpd.Schedule.infusion(100.0, 2.0, at=20.0) + pkpd.Schedule.doses([30.0], [50.0], "oral", ss=True, ii=24.0)
    c = np.asarray(pkpd.simulate(m, s, [0.0, 5.0, 10.0])["concentration"])
    assert np.all(c == 0.0)


def test_ss_gradient_finite_without_absorption():
    def loss(cl):
        m = pkpd.pk.TwoCompartment(cl=cl, v1=10.0, q=6.0, v2=30.0)
        s = pkpd.Schedule.single_dose(100.0, "iv") + pkpd.Schedule.doses([24.0], [100.0], "iv", ss=True, ii=24.0)
        return jnp.sum(pkpd.simulate(m, s, np.array([30.0, 40.0]))["concentration"])

    g = jax.grad(loss)(4.0)
    fd = (loss(4.0 + 1e-5) - loss(4.0 - 1e-5)) / 2e-5
    assert np.isfinite(g) and np.isclose(g, fd, rtol=1e-5)


def test_unit_roundoff_keeps_right_continuity():
    m = pkpd.pk.OneCompartment(cl=5.0, v=20.0)
    s = pkpd.Schedule.doses([0.1], [100.0], "iv", time_unit="d")  # stored as 2.4000000000000004 h
    assert float(pkpd.simulate(m, s, [0.0, 2.4])["central"][-1]) == pytest.approx(100.0)


def test_shift_before_zero_and_float_codes_rejected():
    with pytest.raises(ValueError, match="before time 0"):
        pkpd.Schedule.single_dose(1.0, at=1.0).shift(-2.0)
    with pytest.raises(ValueError, match="integer codes"):
        pkpd.Schedule(
            dose_time=np.zeros(1),
            dose_amount=np.ones(1),
            dose_route=np.array([2.0]),
            dose_duration=np.zeros(1),
            dose_ss=np.zeros(1, bool),
            dose_ii=np.zeros(1),
        )
    with pytest.raises(ValueError, match="whole number"):
        pkpd.Schedule.repeated(1.0, every=12.0, n=2.7)
