"""Optimising the training course of a combination protocol (``pkpd.optimise_schedule`` on
``"psilocybin+therapy"``, ...): the treatment is fixed, so its plasticity window is simulated once
per draw and the learning readout (:mod:`pkpd.windows`) is a cheap, differentiable function of the
training delay and spacing, searched on a grid over the bounds and refined (Nelder-Mead)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from ..protocols import COMBINATIONS, TRAINING_OPTIONS, protocol
from ..windows import learning, learning_alone, training_arrays, window
from ._result import DesignResult

TRAINING_VARY = ("training_delay_h", "training_interval_h")
READOUTS = ("learning", "learning_gain")


def _check(name, readout, vary, bounds, objective):
    if readout not in READOUTS:
        raise ValueError(f"readout={readout!r} is not a readout of combination {name!r}; valid: {list(READOUTS)}")
    vary = [vary] if isinstance(vary, str) else list(vary)
    bad = [v for v in vary if v not in TRAINING_VARY]
    if not vary or bad:
        raise ValueError(f"vary={vary!r}: combination {name!r} varies {list(TRAINING_VARY)}")
    for v in vary:
        if v not in bounds:
            raise ValueError(f"bounds has no entry for {v!r}; give bounds={{{v!r}: (low, high)}} in hours")
        lo, hi = (float(x) for x in bounds[v])
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
            raise ValueError(f"bounds[{v!r}]=({lo}, {hi}) must satisfy 0 <= low < high (hours)")
    if objective not in ("max", "min"):
        raise ValueError(f"objective={objective!r} must be 'max' or 'min'")
    return vary


def _values(res, base, vary, xs, at_h, relative):
    """Learning (or gain) per draw (rows) and design (columns) for designs ``xs`` (n, len(vary))."""
    start, dur, inten = training_arrays(base)
    n = start.shape[0]
    x = jnp.asarray(xs, dtype=jnp.float64)
    delay = x[:, vary.index("training_delay_h")] if "training_delay_h" in vary else jnp.full(x.shape[0], start[0])
    if "training_interval_h" in vary:
        interval = x[:, vary.index("training_interval_h")]
        starts = delay[:, None] + interval[:, None] * jnp.arange(n)[None, :]
    else:
        starts = delay[:, None] + (start - start[0])[None, :]
    gains = jnp.asarray([p.gain for p in res.params])
    forget = jnp.asarray([p.k_forget for p in res.params])

    def one(w, g, kf):
        val = jax.vmap(lambda s: learning(res.times, w, s, dur, inten, at_h, g, kf))(starts)
        if relative:
            val = val / jax.vmap(lambda s: learning_alone(s, dur, inten, at_h, kf))(starts)
        return val

    return np.asarray(jax.vmap(one)(jnp.asarray(np.nan_to_num(res.w)), gains, forget))


def _feasible(base, vary, x) -> bool:
    """Sessions must not overlap: the interval at least the session duration."""
    if "training_interval_h" in vary and base.n_training > 1:
        return float(x[vary.index("training_interval_h")]) >= float(base.training_duration[0])
    return True


def optimise_training(
    name: str,
    *,
    readout: str,
    at_h: float,
    vary,
    bounds: dict,
    objective: str = "max",
    species: str = "human",
    draws: int = 0,
    seed: int = 0,
    protocol_options: dict | None = None,
    calibration=None,
    grid: int = 241,
):
    """See :func:`pkpd.optimise_schedule` (combination protocols)."""
    t0 = time.perf_counter()
    vary = _check(name, readout, vary, bounds, objective)
    opts = dict(protocol_options or {})
    base = protocol(name, species=species, **opts)
    res = window(name, species=species, schedule=base, draws=int(draws or 0), seed=seed, calibration=calibration)
    rel = readout == "learning_gain"
    sign = 1.0 if objective == "max" else -1.0
    axes = [np.linspace(*map(float, bounds[v]), grid if len(vary) == 1 else 41) for v in vary]
    pts = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
    ok = np.array([_feasible(base, vary, p) for p in pts])
    pts = pts[ok]
    vals = _values(res, base, vary, pts, at_h, rel)
    mean = np.nanmean(vals, axis=0)
    i = int(np.nanargmax(sign * mean))
    lo = np.array([float(bounds[v][0]) for v in vary])
    hi = np.array([float(bounds[v][1]) for v in vary])
    f = lambda x: -sign * float(np.nanmean(_values(res, base, vary, np.clip(x, lo, hi)[None, :], at_h, rel)))  # noqa: E731
    ref = optimize.minimize(f, pts[i], method="Nelder-Mead", options=dict(xatol=1e-3, fatol=1e-10, maxiter=400))
    x_best = np.clip(ref.x, lo, hi) if ref.fun <= -sign * mean[i] and _feasible(base, vary, ref.x) else pts[i]
    best = float(np.nanmean(_values(res, base, vary, x_best[None, :], at_h, rel)))
    x_std = np.array([float(opts.get(v, getattr(COMBINATIONS[name], v))) for v in vary])
    std = float(np.nanmean(_values(res, base, vary, x_std[None, :], at_h, rel)))
    schedule = protocol(name, species=species, **{**opts, **dict(zip(vary, map(float, x_best)))})
    per_draw = None
    if draws:
        j = np.nanargmax(sign * vals, axis=1)
        xd = pts[j]
        per_draw = dict(
            x={v: xd[:, k] for k, v in enumerate(vary)},
            value_at_optimum=vals[np.arange(vals.shape[0]), j],
            value_at_standard=_values(res, base, vary, x_std[None, :], at_h, rel)[:, 0],
            spread={v: _spread(xd[:, k]) for k, v in enumerate(vary)},
        )
    import pandas as pd

    history = pd.DataFrame({**{v: pts[:, k] for k, v in enumerate(vary)}, "value": mean, "stage": "grid"})
    return DesignResult(
        schedule=schedule,
        value=best,
        standard_value=std,
        standard_schedule=base,
        x=dict(zip(vary, map(float, x_best))),
        x_standard=dict(zip(vary, map(float, x_std))),
        history=history,
        readout=readout,
        metric="value",
        objective=objective,
        at_h=float(at_h),
        improved=bool(sign * (best - std) > 0),
        message=f"grid of {pts.shape[0]} designs refined by Nelder-Mead ({ref.nit} iterations)",
        constraints={},
        draws=per_draw,
        elapsed_s=time.perf_counter() - t0,
    )


def _spread(x) -> dict:
    x = np.asarray(x, dtype=float)
    q = np.quantile(x, [0.05, 0.5, 0.95])
    return dict(
        mean=float(np.mean(x)), sd=float(np.std(x, ddof=1)) if x.size > 1 else 0.0, q05=q[0], q50=q[1], q95=q[2]
    )


__all__ = ["TRAINING_OPTIONS", "optimise_training"]
