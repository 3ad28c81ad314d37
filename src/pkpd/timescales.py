"""Time-scale metrics of a readout's time course, for one curve or many (posterior draws).

Every readout in pkpd is relative to its pre-treatment baseline (1.0), so the *change* is
``y - 1``. The metrics use the change of largest magnitude within the horizon to set the
direction (an inhibitory protocol such as cTBS has a negative peak), then on the signed-to-
positive curve ``a(t)``:

- ``peak``: max a (as a signed change, fraction of baseline);
- ``tmax_h``: time of the peak;
- ``onset_h``: first time a(t) reaches 10 % of the peak;
- ``t50_h``: first time a(t) reaches 50 % of the peak (the half-time of the rise);
- ``duration_h``: total time a(t) spends at or above half the peak;
- ``change_24h``, ``change_7d``, ``change_28d``, ``change_90d``: the signed change at those times
  (NaN beyond the grid);
- ``auc``: the integral of the signed change (fraction x h).

Crossing times are linearly interpolated between grid points, so their resolution is that of the
time grid (:func:`time_grid` is log-spaced: ~4 % of the time at any time). A curve that never
changes (peak 0) has NaN times. :func:`summarise` turns draws into median and 90 % interval.
"""

from __future__ import annotations

import numpy as np

#: Fixed evaluation times of the ``change_*`` metrics (h).
AT_H = {"change_24h": 24.0, "change_7d": 168.0, "change_28d": 672.0, "change_90d": 2160.0}
TIME_METRICS = ("onset_h", "t50_h", "tmax_h", "duration_h")
METRICS = TIME_METRICS + ("peak", "auc") + tuple(AT_H)
HORIZON_H = 2160.0


def time_grid(horizon_h: float = HORIZON_H, n: int = 240, first_h: float = 0.05) -> np.ndarray:
    """0 followed by ``n`` log-spaced times from ``first_h`` to ``horizon_h`` (h)."""
    if not (np.isfinite(horizon_h) and horizon_h > first_h > 0):
        raise ValueError(f"horizon_h={horizon_h!r} must be finite and > first_h={first_h!r} > 0")
    return np.concatenate([[0.0], np.geomspace(first_h, horizon_h, int(n))])


def _first_crossing(t, a, level):
    """First time each row of ``a`` reaches ``level`` (per row), linearly interpolated; NaN if never."""
    above = a >= level[:, None]
    hit = above.any(axis=1)
    i = np.argmax(above, axis=1)
    rows = np.arange(a.shape[0])
    i0 = np.maximum(i - 1, 0)
    a0, a1 = a[rows, i0], a[rows, i]
    t0, t1 = t[i0], t[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(a1 > a0, (level - a0) / (a1 - a0), 0.0)
    out = np.where(i == 0, t[0], t0 + np.clip(frac, 0.0, 1.0) * (t1 - t0))
    return np.where(hit, out, np.nan)


def _time_above(t, a, level):
    """Time each row of ``a`` spends >= level, with linear interpolation inside grid intervals."""
    x0, x1 = a[:, :-1] - level[:, None], a[:, 1:] - level[:, None]
    dt = np.diff(t)[None, :]
    both = (x0 >= 0) & (x1 >= 0)
    cross = (x0 >= 0) != (x1 >= 0)
    den = np.where(cross, x0 - x1, 1.0)  # nonzero wherever the curve crosses the level
    part = np.where(x0 >= 0, x0 / den, -x1 / den)
    return np.sum(np.where(both, dt, 0.0) + np.where(cross, np.nan_to_num(part) * dt, 0.0), axis=1)


def metrics(times, change, *, horizon_h: float | None = None) -> dict[str, np.ndarray]:
    """Time-scale metrics of ``change`` (fraction of baseline; shape (times,) or (draws, times))
    on ``times`` (h, increasing). Returns a dict of arrays (draws,), or floats for one curve."""
    t = np.asarray(times, dtype=float)
    c = np.asarray(change, dtype=float)
    single = c.ndim == 1
    c = np.atleast_2d(c)
    if t.ndim != 1 or c.shape[1] != t.size or t.size < 2:
        raise ValueError(
            f"times (shape {t.shape}) and change (shape {np.shape(change)}) must share the time axis (>= 2 points)"
        )
    if np.any(np.diff(t) <= 0) or not np.all(np.isfinite(t)):
        raise ValueError("times must be finite and strictly increasing")
    if horizon_h is not None:
        keep = t <= horizon_h
        t, c = t[keep], c[:, keep]
    finite = np.all(np.isfinite(c), axis=1)
    c = np.where(finite[:, None], c, 0.0)
    k = np.argmax(np.abs(c), axis=1)
    rows = np.arange(c.shape[0])
    peak = c[rows, k]
    sign = np.where(peak < 0, -1.0, 1.0)
    a = c * sign[:, None]
    mag = np.abs(peak)
    flat = (mag <= 0) | ~finite
    out = {
        "onset_h": _first_crossing(t, a, 0.1 * mag),
        "t50_h": _first_crossing(t, a, 0.5 * mag),
        "tmax_h": t[k].astype(float),
        "duration_h": _time_above(t, a, 0.5 * mag),
        "peak": peak,
        "auc": np.trapezoid(c, t, axis=1),
    }
    for name in TIME_METRICS:
        out[name] = np.where(flat, np.nan, out[name])
    for name, at in AT_H.items():
        out[name] = np.array([np.interp(at, t, row) if at <= t[-1] else np.nan for row in c])
    for name in ("peak", "auc"):
        out[name] = np.where(finite, out[name], np.nan)
    if single:
        return {k: float(v[0]) for k, v in out.items()}
    return out


def change_at(times, change, at_h: float) -> np.ndarray:
    """The signed change at ``at_h`` (linear interpolation; NaN beyond the grid)."""
    t = np.asarray(times, dtype=float)
    c = np.atleast_2d(np.asarray(change, dtype=float))
    if at_h > t[-1] or at_h < t[0]:
        return np.full(c.shape[0], np.nan)
    return np.array([np.interp(at_h, t, row) for row in c])


def cumulative_half_time(times, rate, until_h) -> np.ndarray:
    """Time at which half of ``\\int_0^until rate dt`` has accumulated (per row; trapezoid rule).

    Used as the *schedule/PK clock*: the half-time of a perfect, instantaneous integrator of the
    treatment's input (target occupancy for drugs, delivered sessions for devices)."""
    t = np.asarray(times, dtype=float)
    r = np.atleast_2d(np.asarray(rate, dtype=float))
    until = np.broadcast_to(np.asarray(until_h, dtype=float), (r.shape[0],))
    cum = np.concatenate(
        [np.zeros((r.shape[0], 1)), np.cumsum(0.5 * (r[:, 1:] + r[:, :-1]) * np.diff(t), axis=1)], axis=1
    )
    total = np.array([np.interp(u, t, row) for u, row in zip(until, cum)])
    out = _first_crossing(t, cum, 0.5 * total)
    return np.where(total > 0, out, np.nan)


def input_half_time(times, cumulative, *, window_h: float = 168.0) -> np.ndarray:
    """The *schedule/PK clock*: the first time the treatment's input rate, averaged over the
    trailing ``window_h`` (a week by default), reaches half its maximum over ``times``.

    ``cumulative``: the input delivered up to each time (per row): the integral of target
    occupancy for drugs, the pulses or seizures delivered for devices. The weekly mean rate
    ``(C(t) - C(t - window)) / window`` rises as fast as the drug accumulates and as the sessions
    come, so its half-time is how long the schedule and the PK take to bring in the input;
    everything after that is the biology."""
    t = np.asarray(times, dtype=float)
    cum = np.atleast_2d(np.asarray(cumulative, dtype=float))
    fine = np.unique(np.concatenate([t, np.arange(0.0, t[-1], 0.25)]))
    c = np.array([np.interp(fine, t, row) for row in cum])
    lag = np.array([np.interp(fine - window_h, t, row, left=0.0) for row in cum])
    rate = (c - lag) / window_h
    out = _first_crossing(fine, rate, 0.5 * rate.max(axis=1))
    return np.where(rate.max(axis=1) > 0, out, np.nan)


def summarise(values, *, level: float = 0.9) -> list[float]:
    """``[median, lo, hi]`` of the finite values (central ``level`` interval); NaNs if none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [float("nan")] * 3
    q = (1 - level) / 2
    return [float(np.median(v)), float(np.quantile(v, q)), float(np.quantile(v, 1 - q))]
