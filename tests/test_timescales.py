"""Time-scale metrics against closed forms."""

import numpy as np
import pytest
from scipy.optimize import brentq

from pkpd import timescales as ts

T = np.concatenate([[0.0], np.geomspace(1e-3, 2000.0, 4000)])


def test_exponential_rise_closed_form():
    k = 0.003  # 1/h: still rising at the end of the grid, so the peak is the last point
    m = ts.metrics(T, 0.2 * (1 - np.exp(-k * T)))
    t50 = brentq(lambda t: (1 - np.exp(-k * t)) - 0.5 * (1 - np.exp(-k * T[-1])), 1.0, T[-1])
    assert m["t50_h"] == pytest.approx(t50, rel=2e-3)
    onset = brentq(lambda t: (1 - np.exp(-k * t)) - 0.1 * (1 - np.exp(-k * T[-1])), 1e-3, T[-1])
    assert m["onset_h"] == pytest.approx(onset, rel=2e-3)
    assert m["tmax_h"] == pytest.approx(T[-1])
    assert m["peak"] == pytest.approx(0.2 * (1 - np.exp(-k * T[-1])))
    assert m["change_24h"] == pytest.approx(0.2 * (1 - np.exp(-k * 24)), rel=1e-4)
    assert m["auc"] == pytest.approx(0.2 * (T[-1] - (1 - np.exp(-k * T[-1])) / k), rel=1e-4)


def test_bateman_peak_half_times_and_duration():
    tau = 30.0
    c = (T / tau) * np.exp(1 - T / tau)  # peak 1 at t = tau
    m = ts.metrics(T, c)
    f = lambda x: x * np.exp(1 - x) - 0.5  # noqa: E731
    up, down = brentq(f, 1e-6, 1.0) * tau, brentq(f, 1.0, 20.0) * tau
    assert m["tmax_h"] == pytest.approx(tau, rel=3e-3)
    assert m["t50_h"] == pytest.approx(up, rel=2e-3)
    assert m["duration_h"] == pytest.approx(down - up, rel=2e-3)


def test_negative_changes_use_the_signed_peak_and_draws_vectorise():
    k = np.array([0.01, 0.1])
    c = -0.3 * (1 - np.exp(-k[:, None] * T))
    m = ts.metrics(T, c)
    np.testing.assert_allclose(m["t50_h"], np.log(2) / k, rtol=2e-3)
    assert np.all(m["peak"] < 0)


def test_flat_and_non_finite_curves_give_nan_times():
    c = np.vstack([np.zeros_like(T), np.full_like(T, np.nan)])
    m = ts.metrics(T, c)
    assert np.all(np.isnan(m["t50_h"])) and np.all(np.isnan(m["onset_h"]))
    assert np.isnan(m["peak"][1])


def test_horizon_truncates():
    c = 1 - np.exp(-0.001 * T)
    full, cut = ts.metrics(T, c), ts.metrics(T, c, horizon_h=100.0)
    assert cut["tmax_h"] <= 100.0 < full["tmax_h"]
    assert np.isnan(cut["change_7d"])


def test_cumulative_half_time_of_a_constant_rate_is_half_the_window():
    np.testing.assert_allclose(
        ts.cumulative_half_time(T, np.ones((2, T.size)), [100.0, 1000.0]), [50.0, 500.0], rtol=2e-3
    )


def test_summarise_and_bad_input():
    assert ts.summarise([1.0, 2.0, 3.0, np.nan])[0] == 2.0
    assert np.isnan(ts.summarise([np.nan])[0])
    with pytest.raises(ValueError, match="strictly increasing"):
        ts.metrics([0.0, 2.0, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="share the time axis"):
        ts.metrics([0.0, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="horizon_h"):
        ts.time_grid(-1.0)


def test_input_half_time_of_constant_and_impulse_inputs():
    t = np.linspace(0.0, 1000.0, 4001)
    constant = ts.input_half_time(t, t[None, :])  # rate 1 from t = 0: the weekly mean reaches 1/2 at 84 h
    assert constant[0] == pytest.approx(84.0, abs=0.3)
    daily = np.floor(t / 24.0) + 1.0  # one session a day from t = 0
    assert ts.input_half_time(t, daily[None, :])[0] == pytest.approx(72.0, abs=24.0)
    assert np.isnan(ts.input_half_time(t, np.zeros((1, t.size)))[0])
