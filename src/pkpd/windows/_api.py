"""When a protocol's window opens and closes, and what training at a given delay learns."""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..protocols import COMBINATIONS, protocol
from ..schedule import Schedule
from ._core import (
    WindowParams,
    gain_draws,
    learning,
    learning_alone,
    openness_draws,
    training_arrays,
    window_interval,
)
from ._fit import dense_times, load as load_fit


def treatment_of(name: str) -> str:
    """The modality of a protocol name (a combination's treatment, or the name itself)."""
    return COMBINATIONS[name].treatment if name in COMBINATIONS else name


def _summary(x) -> dict:
    x = np.asarray(x, dtype=float)
    f = x[np.isfinite(x)]
    if f.size == 0:
        return dict(median=float("nan"), lo=float("nan"), hi=float("nan"), n=int(x.size))
    q = np.quantile(f, [0.5, 0.05, 0.95])
    return dict(median=float(q[0]), lo=float(q[1]), hi=float(q[2]), n=int(x.size))


@dataclass
class WindowResult:
    """Openness on ``times`` (h) for one protocol, per draw (rows of ``w``), with the window's
    ``opens_h`` / ``closes_h`` (h after the first dose or session), ``duration_h`` (closing time
    after the end of the treatment) and ``open_h`` (total time open) per draw."""

    name: str
    species: str
    schedule: Schedule
    times: np.ndarray
    w: np.ndarray
    params: list = field(repr=False)
    opens_h: np.ndarray = field(init=False)
    closes_h: np.ndarray = field(init=False)
    duration_h: np.ndarray = field(init=False)
    open_h: np.ndarray = field(init=False)

    def __post_init__(self):
        self.opens_h, self.closes_h, self.open_h = window_interval(self.times, self.w)
        self.duration_h = self.closes_h - self.schedule.end_time

    def summary(self) -> dict:
        """Median and 90 % interval over draws of ``opens_h``, ``closes_h``, ``duration_h``,
        ``open_h``, the fraction of draws in which the window opens at all, and the fraction still open
        at the last time point (``p_open_at_horizon``: there the closing time is the horizon, a lower bound)."""
        return dict(
            name=self.name,
            species=self.species,
            opens_h=_summary(self.opens_h),
            closes_h=_summary(self.closes_h),
            duration_h=_summary(self.duration_h),
            open_h=_summary(self.open_h),
            p_opens=float(np.mean(np.isfinite(self.opens_h))),
            p_open_at_horizon=float(np.mean(self.w[:, -1] >= 1.0)),
            horizon_h=float(self.times[-1]),
        )

    def learning(self, schedule: Schedule, at_h: float) -> np.ndarray:
        """Learning at ``at_h`` (hours of standard training) of ``schedule``'s training sessions, per draw."""
        return gain_draws(self.times, self.w, self.params, *training_arrays(schedule), at_h)[0]

    def gain(self, schedule: Schedule, at_h: float) -> np.ndarray:
        """Learning over the same training without treatment, per draw."""
        lv, alone = gain_draws(self.times, self.w, self.params, *training_arrays(schedule), at_h)
        return lv / alone


def _core_models(modality, species, calibration, draws, seed):
    from .. import calibrate

    cal = calibration if calibration is not None else calibrate.load()
    if not draws:
        return cal, [cal.model(modality, species=species)]
    return cal, cal.models(modality, draws, species=species, seed=seed)


def window(
    name: str,
    *,
    species: str = "human",
    schedule: Schedule | None = None,
    calibration=None,
    fit=None,
    params: WindowParams | None = None,
    draws: int = 0,
    seed: int = 0,
    horizon_h: float | None = None,
) -> WindowResult:
    """The plasticity window of protocol ``name`` (a modality or a combination; or ``schedule``).

    ``draws=0``: the core at the calibration's MAP and the window at its fit's MAP (``params``
    overrides it); ``draws=n``: ``n`` posterior draws of the core (``calibration.models``) paired
    with ``n`` Laplace draws of the window fit. ``horizon_h``: default 120 days after the treatment."""
    import diffrax as dfx

    from ..simulate import simulate_population, stack

    modality = treatment_of(name)
    sched = schedule if schedule is not None else protocol(name, species=species)
    horizon = float(horizon_h) if horizon_h is not None else sched.end_time + 24.0 * 120
    t = dense_times(sched, horizon)
    _, models = _core_models(modality, species, calibration, draws, seed)
    wf = fit if fit is not None else (load_fit() if params is None else None)
    if params is not None:
        plist = [params] * len(models)
    elif draws:
        plist = wf.draws(len(models), seed=seed)
    else:
        plist = [wf.params()]
    solver = dfx.Kvaerno5()
    tr = simulate_population(stack(models), sched, t, solver=solver, rtol=1e-7, atol=1e-10, throw=False)
    sig = np.asarray(tr[plist[0].signal]).reshape(len(models), -1)
    ok = np.asarray(tr.status).reshape(-1) == 0
    w = openness_draws(t, sig, plist)
    w[~ok] = np.nan
    return WindowResult(name=name, species=species, schedule=sched, times=t, w=w, params=plist)


def learning_value(res: WindowResult, schedule: Schedule, at_h: float, *, relative: bool = False) -> np.ndarray:
    """Learning (or, ``relative``, the gain over training alone) of ``schedule``'s training at
    ``at_h`` given the window ``res``, per draw."""
    return res.gain(schedule, at_h) if relative else res.learning(schedule, at_h)


def _delay_batch(res: WindowResult, base: Schedule, delays, at_h: float):
    """Learning at ``at_h`` for the training of ``base`` shifted so that it starts at each delay (h),
    per draw: shape (draws, delays). One vectorised evaluation."""
    start, dur, inten = training_arrays(base)
    rel = start - start[0]
    d = jnp.asarray(delays, dtype=jnp.float64)
    gains = jnp.asarray([p.gain for p in res.params])
    forget = jnp.asarray([p.k_forget for p in res.params])

    def one(w, g, kf):
        return jax.vmap(lambda dd: learning(res.times, w, dd + rel, dur, inten, at_h, g, kf))(d)

    return np.asarray(jax.vmap(one)(jnp.asarray(np.nan_to_num(res.w)), gains, forget))


def learning_curve(
    name: str, delays_h, *, at_h: float, species: str = "human", draws: int = 0, seed: int = 0, result=None, **kw
):
    """Learning gain (over the same training without treatment) at ``at_h`` vs the delay of the
    first training session of combination ``name`` (h after the first dose or session), with the
    median and 90 % interval over draws: a pandas DataFrame (columns ``delay_h``, ``gain``,
    ``gain_lo``, ``gain_hi``, ``learning``)."""
    import pandas as pd

    if name not in COMBINATIONS:
        raise KeyError(f"{name!r} is not a combination protocol; valid: {list(COMBINATIONS)}")
    base = protocol(name, species=species, **kw)
    res = result if result is not None else window(name, species=species, schedule=base, draws=draws, seed=seed)
    delays = np.asarray(delays_h, dtype=float)
    lv = _delay_batch(res, base, delays, at_h)
    start, dur, inten = training_arrays(base)
    rel = start - start[0]
    forget = jnp.asarray([p.k_forget for p in res.params])
    one = lambda dd, kf: learning_alone(dd + rel, dur, inten, at_h, kf)  # noqa: E731
    alone = np.asarray(jax.vmap(lambda kf: jax.vmap(lambda dd: one(dd, kf))(jnp.asarray(delays)))(forget))
    g = lv / alone
    q = np.nanquantile(g, [0.5, 0.05, 0.95], axis=0)
    return pd.DataFrame(dict(delay_h=delays, gain=q[0], gain_lo=q[1], gain_hi=q[2], learning=np.nanmedian(lv, axis=0)))
