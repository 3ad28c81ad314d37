"""Plasticity windows and learning (pkpd.windows): closed forms, invariants, parameter recovery."""

import jax
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pkpd
from pkpd import windows as W
from pkpd.windows import _fit


def _signal(t):
    return 1.0 + 3.0 * np.exp(-0.3 * t) * (1 - np.exp(-2.0 * t))


def test_openness_matches_an_ode_solution_for_a_piecewise_linear_signal():
    t = np.concatenate([np.linspace(0, 10, 41), np.linspace(10.5, 200, 60)])
    x = _signal(t)
    k_open, k_close = 0.3, 0.02
    w = np.asarray(W.openness(t, x, k_open, k_close))
    u = lambda s: max(np.interp(s, t, x) - 1.0, 0.0)  # noqa: E731
    ref = solve_ivp(
        lambda s, y: [k_open * u(s) - k_close * y[0]],
        (0, t[-1]),
        [0.0],
        t_eval=t,
        rtol=1e-11,
        atol=1e-13,
        max_step=0.25,
    )
    np.testing.assert_allclose(w, ref.y[0], rtol=1e-6, atol=1e-9)


def test_openness_of_a_constant_signal_is_the_exponential_approach():
    t = np.linspace(0, 100, 11)
    w = np.asarray(W.openness(t, np.full(t.size, 3.0), 0.5, 0.1))
    np.testing.assert_allclose(w, 0.5 * 2.0 / 0.1 * (1 - np.exp(-0.1 * t)), rtol=1e-12)


def test_openness_batches_and_differentiates():
    t = np.linspace(0, 50, 26)
    x = np.stack([_signal(t), 1.0 + 0.5 * _signal(t)])
    w = np.asarray(W.openness(t, x, 0.2, 0.05))
    np.testing.assert_allclose(w[1], np.asarray(W.openness(t, x[1], 0.2, 0.05)), rtol=1e-13)
    g = jax.grad(lambda k: W.openness(t, x[0], 0.2, k)[-1])(0.05)
    h = 1e-6
    fd = (W.openness(t, x[0], 0.2, 0.05 + h)[-1] - W.openness(t, x[0], 0.2, 0.05 - h)[-1]) / (2 * h)
    np.testing.assert_allclose(float(g), float(fd), rtol=1e-6)


def test_window_interval_of_an_exponential_decay():
    t = np.linspace(0, 200, 2001)
    k = 0.02
    w = 4.0 * np.exp(-k * t)
    opens, closes, total = W.window_interval(t, w)
    assert opens == 0.0
    np.testing.assert_allclose(closes, np.log(4.0) / k, rtol=1e-4)
    np.testing.assert_allclose(total, np.log(4.0) / k, rtol=1e-4)
    assert np.isnan(W.window_interval(t, 0.2 * w)[0]) and W.window_interval(t, 0.2 * w)[2] == 0.0


def test_learning_closed_forms():
    t = np.linspace(0, 500, 501)
    start, dur, inten = np.array([10.0, 50.0, 400.0]), np.array([1.0, 2.0, 1.0]), np.array([1.0, 0.5, 1.0])
    c = 3.0
    w = np.full(t.size, c)
    at = 300.0  # the third session falls after at_h and must not count
    for kf in (0.0, 0.003):
        alone = float(W.learning_alone(start, dur, inten, at, kf))
        expect = sum(
            i * (np.exp(-kf * (at - s - d)) - np.exp(-kf * (at - s))) / kf if kf else i * d
            for s, d, i in zip(start[:2], dur[:2], inten[:2])
        )
        np.testing.assert_allclose(alone, expect, rtol=1e-10)
        got = float(W.learning(t, w, start, dur, inten, at, 0.8, kf))
        np.testing.assert_allclose(got, alone * (1 + 0.8 * c / (1 + c)), rtol=1e-10)
        np.testing.assert_allclose(
            float(W.learning(t, np.zeros(t.size), start, dur, inten, at, 0.8, kf)), alone, rtol=1e-12
        )


def test_learning_is_differentiable_in_the_session_start():
    t = np.linspace(0, 300, 3001)
    w = 5.0 * np.exp(-0.01 * t)
    f = lambda s: W.learning(t, w, jax.numpy.stack([s]), np.array([1.0]), np.array([1.0]), 250.0, 1.0, 0.0)  # noqa: E731
    g = float(jax.grad(f)(40.0))
    fd = float((f(40.01) - f(39.99)) / 0.02)
    assert g < 0  # the window is closing: later training learns less
    np.testing.assert_allclose(g, fd, rtol=1e-3)


def test_training_sessions_do_not_change_the_simulation():
    m = pkpd.model("psilocybin")
    s = pkpd.protocol("psilocybin")
    t = np.linspace(0, 72, 13)
    a = pkpd.simulate(m, s, t).states
    b = pkpd.simulate(m, s + pkpd.Schedule.training([5.0, 30.0]), t).states
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_training_schedule_validation_and_combinators():
    with pytest.raises(ValueError, match="training sessions overlap"):
        pkpd.Schedule.training([0.0, 0.5], duration=1.0)
    with pytest.raises(ValueError, match="training_duration"):
        pkpd.Schedule.training([0.0], duration=0.0)
    with pytest.raises(ValueError, match="interval"):
        pkpd.Schedule.training_course(3, first_at=0, interval=0.5, duration=1.0)
    s = pkpd.protocol("psilocybin") + pkpd.Schedule.training_course(2, first_at=1, interval=7, time_unit="d")
    np.testing.assert_allclose(s.training_start, [24.0, 192.0])
    np.testing.assert_allclose(s.shift(2.0).training_start, [26.0, 194.0])
    assert list(s.to_pandas()["kind"]) == ["dose", "training", "training"]
    assert s.end_time == 0.0 and s.training_end == 192.0 + 24.0


def test_combination_protocols():
    s = pkpd.protocol("ketamine+cbt", training_delay_h=72.0, training_sessions=4)
    assert s.n_doses == 1 and s.n_training == 4 and s.training_start[0] == 72.0
    assert "psilocybin+therapy" in pkpd.protocols()
    with pytest.raises(TypeError, match="unknown option"):
        pkpd.protocol("psilocybin+therapy", nonsense=1)
    with pytest.raises(KeyError, match="psilocybin\\+therapy"):
        pkpd.protocol("psilocybin+nothing")


def test_split_options_and_row_schedule():
    treat, train = _fit.split_options("doses=2;training_delay_h=48;training_sessions=3")
    assert treat == "doses=2" and train == dict(training_delay_h=48.0, training_sessions=3.0)
    s = _fit.row_schedule("ketamine", "human", "training_delay_h=48;training_sessions=3;training_interval_h=24")
    np.testing.assert_allclose(s.training_start, [48.0, 72.0, 96.0])


def _synthetic_problem(true_z, candidate="pv_brake"):
    """Rows generated from known window parameters on two synthetic signals (no data used)."""
    t = np.concatenate([np.arange(0, 48, 0.1), np.arange(48, 24 * 90, 2.0)])
    strong, weak = 1.0 + 4.0 * np.exp(-t / 5.0) * (1 - np.exp(-t)), 1.0 + 2.0 * np.exp(-t / 4.0) * (1 - np.exp(-t))
    p = _fit._params(candidate, true_z, 1e-4)
    rows, inputs = [], []
    sched = pkpd.protocol("psilocybin")
    for x in (strong, weak):
        w = np.asarray(W.openness(t, x, p.k_open, p.k_close))
        d = float(W.window_interval(t, w)[1])
        rows.append(_fit.WindowRow("s", "psilocybin", "mouse", "duration", sched, d, lo=d * 0.9, hi=d * 1.1))
        inputs.append((t, x))
    train = sched + pkpd.Schedule.training_course(5, first_at=24.0, interval=24.0)
    w = np.asarray(W.openness(t, strong, p.k_open, p.k_close))
    g = float(_fit.predicted(_fit.WindowRow("r", "psilocybin", "mouse", "ratio", train, 1.0, time_h=24 * 30), t, w, p))
    rows.append(_fit.WindowRow("r", "psilocybin", "mouse", "ratio", train, g, time_h=24 * 30, sd_log=0.02))
    inputs.append((t, strong))
    return _fit._Problem(candidate, rows, inputs, 1e-4)


def test_window_fit_recovers_known_parameters():
    true_z = np.log([0.2, 0.01, 1.5])
    out = _fit.fit_candidate(_synthetic_problem(true_z), loo=False)
    np.testing.assert_allclose(out["z"], true_z, atol=0.15)
    for r in out["rows"]:
        np.testing.assert_allclose(r["predicted"], r["observed"], rtol=0.15)
    assert np.all(np.linalg.eigvalsh(np.asarray(out["cov_z"])) > 0)


def test_training_delay_optimum_is_the_peak_of_openness_without_forgetting():
    from pkpd.design._windows import _values

    t = np.linspace(0, 24 * 40, 24 * 40 * 2 + 1)
    w = 3.0 * t / 48.0 * np.exp(1 - t / 48.0)  # peaks at 48 h
    p = W.WindowParams(k_open=1.0, k_close=0.01, gain=1.0, k_forget=0.0)
    sched = pkpd.protocol("psilocybin+therapy", training_sessions=1)
    res = W.WindowResult("psilocybin+therapy", "human", sched, t, w[None, :], [p])
    delays = np.linspace(0, 24 * 10, 481)
    v = _values(res, sched, ["training_delay_h"], delays[:, None], 24.0 * 30, False)[0]
    assert abs(delays[np.argmax(v)] - 47.5) <= 0.5  # a 1-h session centred on the peak


def test_window_summary_flags_draws_still_open_at_the_horizon():
    t = np.linspace(0, 100, 101)
    closing = 3.0 * np.exp(-0.05 * t)  # closes at ln 3 / 0.05 = 22 h
    still_open = 1.0 + 2.0 * np.exp(-0.001 * t)
    res = W.WindowResult(
        name="x", species="human", schedule=pkpd.Schedule.single_dose(1.0), times=t,
        w=np.stack([closing, closing, still_open, still_open]), params=[None] * 4,
    )  # fmt: skip
    s = res.summary()
    assert s["p_open_at_horizon"] == 0.5 and s["horizon_h"] == 100.0
    assert res.closes_h[2] == 100.0  # censored at the horizon
    np.testing.assert_allclose(res.closes_h[0], np.log(3.0) / 0.05, rtol=1e-3)


def test_leave_one_row_out_predicts_a_row_that_another_row_repeats():
    true_z = np.log([0.2, 0.01, 1.5])
    prob = _synthetic_problem(true_z)
    prob.rows.insert(1, prob.rows[0])
    prob.inputs.insert(1, prob.inputs[0])
    out = _fit.fit_candidate(prob, loo=True)
    assert len(out["loo_predicted"]) == len(out["loo_pointwise"]) == len(prob.rows)
    # the copy left in still pins the strong signal's duration, so the fit without row 0 predicts it
    np.testing.assert_allclose(out["loo_predicted"][0], prob.rows[0].value, rtol=0.15)
    assert out["loo_pointwise"][0] > -5.0
    # the ratio row alone sets the gain: without it the gain falls back towards its prior (1.0 < 1.5)
    assert out["loo_predicted"][-1] < 0.99 * out["rows"][-1]["predicted"]
