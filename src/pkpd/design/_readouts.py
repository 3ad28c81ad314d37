"""Readouts of a simulated model and the metrics of their time course that design and
sensitivity runs compute (:func:`opt_metric`, :func:`sens_metric`), and their solver settings."""

from __future__ import annotations

import diffrax as dfx
import jax.numpy as jnp

from ..solvers import default_solver

#: Solver settings for design and sensitivity runs: tolerances matched to the questions asked (a
#: few significant digits), Tsit5 (several-fold faster than the stiff default on these models).
DESIGN_SOLVE = dict(solver=dfx.Tsit5(), rtol=1e-7, atol=1e-10, max_steps=16_384)


#: Sobol runs sample parameters over wide priors, where some draws are stiff: the explicit Tsit5
#: then crawls (and in a vmapped batch every lane waits for the slowest); the stiff default
#: (Kvaerno5) at looser tolerances is faster on such draws (fluoxetine prior draws: metric values
#: agreeing to ~1e-5 relative). Sobol indices only need a few digits.
SOBOL_SOLVE = dict(solver=default_solver(), rtol=1e-4, atol=1e-7, max_steps=4096)


OPT_METRICS = ("value", "time_to", "auc", "peak", "mean")


SENS_METRICS = ("t50", "tmax", "onset", "peak", "auc", "value")


def _readout_names(model) -> list[str]:
    y0 = model.initial_state()
    return list(model.state_names) + [k for k in model.outputs(y0) if k not in model.state_names]


def _check_readout(model, readout: str) -> None:
    names = _readout_names(model)
    if not isinstance(readout, str) or readout not in names:
        raise ValueError(
            f"readout={readout!r} is not a state or output of the {getattr(model, 'modality', '')!r} "
            f"model; valid: {names}"
        )


def _readout(model, ys, readout):
    if readout in model.state_names:
        return ys[..., list(model.state_names).index(readout)]
    return model.outputs(ys)[readout]


def _crossing(t, f):
    """First time at which f (on grid t) becomes >= 0, by linear interpolation; (time, reached)."""
    hit = f >= 0
    reached = jnp.any(hit)
    i = jnp.argmax(hit)
    im = jnp.maximum(i - 1, 0)
    denom = f[i] - f[im]
    frac = jnp.where(jnp.abs(denom) > 0, -f[im] / jnp.where(jnp.abs(denom) > 0, denom, 1.0), 0.0)
    tc = jnp.where(i == 0, t[0], t[im] + frac * (t[i] - t[im]))
    return tc, reached


def opt_metric(t, y, metric: str, *, at_index: int, target=None):
    """Objective metric of a readout ``y`` on the grid ``t`` (see the module docstring)."""
    t = jnp.asarray(t)
    if metric == "value":
        return y[at_index]
    t, y = t[: at_index + 1], y[: at_index + 1]
    c = y - y[0]
    if metric == "auc":
        return jnp.sum(0.5 * (c[1:] + c[:-1]) * jnp.diff(t))
    if metric == "mean":
        return jnp.sum(0.5 * (y[1:] + y[:-1]) * jnp.diff(t)) / (t[-1] - t[0])
    if metric == "peak":
        return y[jnp.argmax(jnp.abs(c))]
    if metric == "time_to":
        s = jnp.sign(target - y[0])
        f = s * (y - target)
        tc, reached = _crossing(t, f)
        best = jnp.max(f)  # <= 0 if not reached: the remaining way, relative to the whole way
        short = -best / jnp.abs(target - y[0])
        return jnp.where(reached, tc, t[-1] * (1.0 + short))
    raise ValueError(f"metric={metric!r} is not known; valid: {list(OPT_METRICS)}")


def sens_metric(t, y, metric: str, *, at_index: int | None = None):
    """Time-scale metric of a readout ``y`` on a uniform grid ``t`` (see :func:`sensitivity`)."""
    t = jnp.asarray(t)
    c = y - y[0]
    i = jnp.argmax(jnp.abs(c))
    peak = c[i]
    if metric == "value":
        return y[at_index]
    if metric == "peak":
        return y[0] + peak
    if metric == "auc":
        return jnp.sum(0.5 * (c[1:] + c[:-1]) * jnp.diff(t))
    if metric == "tmax":  # parabola through the three grid points around the largest change
        ii = jnp.clip(i, 1, t.shape[0] - 2)
        a, b, d = jnp.abs(c[ii - 1]), jnp.abs(c[ii]), jnp.abs(c[ii + 1])
        den = a - 2 * b + d
        off = jnp.where(den < 0, 0.5 * (a - d) / jnp.where(den < 0, den, -1.0), 0.0)
        return t[ii] + jnp.clip(off, -0.5, 0.5) * 0.5 * (t[ii + 1] - t[ii - 1])
    if metric in ("t50", "onset"):
        level = 0.5 if metric == "t50" else 0.1
        rel = c / jnp.where(jnp.abs(peak) > 0, peak, 1.0)
        tc, _ = _crossing(t, rel - level)
        return jnp.where(jnp.abs(peak) > 1e-12, tc, jnp.nan)
    raise ValueError(f"metric={metric!r} is not known; valid: {list(SENS_METRICS)}")
