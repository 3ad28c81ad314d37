"""One-dimensional densities on a grid: a log density taken as linear within each cell, sampled
exactly (:func:`grid_marginal`) and as a differentiable change of variables from a standard
normal (:class:`GridTransform`). The calibration uses them for parameters whose slice the Laplace
approximation misses (:func:`pkpd.calibrate.check_laplace`)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

#: Grid points (over the MAP +- 3 prior sds) of a refused parameter's slice (:func:`grid_marginal`).
SLICE_GRID = 121


def _exp_cell_moments(s):
    """E[t], E[t^2] for t on [0, 1] with density prop. to exp(s t) (vectorised, stable for any s)."""
    s = np.asarray(s, dtype=float)
    a = np.abs(s)
    small = a < 1e-4
    a_ = np.where(small, 1.0, a)
    e = np.exp(-a_)
    m1 = 1.0 / (1.0 - e) - 1.0 / a_  # for exp(+a t)
    m2 = ((a_**2 - 2.0 * a_ + 2.0) - 2.0 * e) / (a_**2 * (1.0 - e))
    m1 = np.where(small, 0.5 + a / 12.0, m1)
    m2 = np.where(small, 1.0 / 3.0 + a / 12.0, m2)
    # exp(-a t) is exp(+a t) mirrored: t -> 1 - t
    t1 = np.where(s >= 0, m1, 1.0 - m1)
    t2 = np.where(s >= 0, m2, 1.0 - 2.0 * m1 + m2)
    return t1, t2


def _cells(ld, h):
    """Cells of a grid log density ``ld`` (spacing ``h``, linear within each cell): the change
    ``s`` over each cell, its mass ``h int_0^1 exp(a + s t) dt`` (0 where an end is not finite) and
    the cells' left-end values (0 where not finite)."""
    a, b = ld[:-1], ld[1:]
    ok = np.isfinite(a) & np.isfinite(b)
    a0, b0 = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    s = b0 - a0
    small = np.abs(s) < 1e-8
    mass = np.where(
        ok, h * np.where(small, np.exp(a0) * (1.0 + s / 2.0), (np.exp(b0) - np.exp(a0)) / np.where(small, 1.0, s)), 0.0
    )
    return s, mass, np.where(ok, a0, -np.inf)


def _cell_inverse(xp, s, q):
    """Inverse of the within-cell CDF ``(e^{s t} - 1) / (e^s - 1)`` at ``q`` in [0, 1], in a form
    that cannot overflow; ``xp`` is numpy or jax.numpy."""
    a = xp.abs(s)
    a_ = xp.where(a < 1e-8, 1.0, a)
    rising = 1.0 + xp.log(q + (1.0 - q) * xp.exp(-a_)) / a_
    falling = xp.log1p(q * xp.expm1(-a_)) / -a_
    return xp.where(a < 1e-8, q, xp.where(s > 0, rising, falling))


def grid_marginal(logdens_1d, lo: float, hi: float, n: int = SLICE_GRID, *, draws: int, rng) -> dict:
    """Draws and moments of the 1-d density ``exp(logdens_1d(x))`` on ``[lo, hi]``.

    The log density is evaluated at ``n`` equally spaced points and taken as linear within each
    cell, which is sampled exactly (piecewise exponential inverse CDF). Points where it is not
    finite (failed solves) carry no mass. Returns ``draws``, ``grid``, ``logd``, ``mean``, ``sd``
    and ``edge_mass`` (the mass in the two outermost cells: > 0.01 means the grid cuts the density)."""
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"need finite lo < hi; got {lo!r}, {hi!r}")
    if int(n) < 3:
        raise ValueError(f"n={n!r} grid points: need >= 3")
    x = np.linspace(lo, hi, int(n))
    ld = np.array([float(logdens_1d(v)) for v in x])
    finite = np.isfinite(ld)
    if not finite.any():
        raise ValueError("the log density is not finite anywhere on the grid")
    ld = np.where(finite, ld - ld[finite].max(), -np.inf)
    h = x[1] - x[0]
    s, mass, _ = _cells(ld, h)
    p = mass / mass.sum()
    cell = rng.choice(p.size, size=int(draws), p=p)
    u = rng.uniform(size=int(draws))
    out = x[cell] + h * _cell_inverse(np, s[cell], u)
    # exact moments of the piecewise-exponential density: within a cell t = (x - x_k)/h has
    # density prop. to exp(s t) on [0, 1]
    t1, t2 = _exp_cell_moments(s)
    mean = float(p @ (x[:-1] + h * t1))
    second = float(p @ (x[:-1] ** 2 + 2.0 * h * x[:-1] * t1 + h**2 * t2))
    return dict(
        draws=out,
        grid=x,
        logd=ld,
        mean=mean,
        sd=float(np.sqrt(max(second - mean**2, 0.0))),
        edge_mass=float(p[0] + p[-1]),
    )


class GridTransform(eqx.Module):
    """The monotone map ``u -> theta = F^{-1}(Phi(u))`` that takes a standard normal ``u`` to the
    piecewise-exponential density of a :func:`grid_marginal` grid (log density linear in each
    cell), with ``log |d theta / d u| = log phi(u) - log f(theta)``. Pure jnp: ``jit`` and ``grad``
    pass through. :func:`nuts` samples a parameter the Laplace check refused in this ``u``: where the
    grid matches the posterior's marginal, the cliff and the plateau become a unit Gaussian. The map
    is exact as a change of variables whatever the grid, so the posterior sampled is unchanged; only
    its geometry is. Its range is the grid's, which truncates the density to it (edge mass
    reported by :func:`grid_marginal`)."""

    x0: jax.Array
    h: jax.Array
    logd: jax.Array  # normalised log density at each cell's left end (-inf: no mass)
    slope: jax.Array  # log-density change over each cell
    cum: jax.Array  # cumulative mass at the cell boundaries, cum[0] = 0, cum[-1] = 1

    def __init__(self, grid, logd):
        x = np.asarray(grid, dtype=float)
        ld = np.asarray(logd, dtype=float)
        if x.ndim != 1 or x.shape != ld.shape or x.size < 3 or not np.all(np.diff(x) > 0):
            raise ValueError("grid and logd must be 1-d of one length >= 3, grid increasing")
        if not np.allclose(np.diff(x), x[1] - x[0], rtol=1e-9, atol=1e-12):
            raise ValueError("the grid must be equally spaced")
        finite = np.isfinite(ld)
        if not finite.any():
            raise ValueError("logd is not finite anywhere")
        h = x[1] - x[0]
        ld = np.where(finite, ld - ld[finite].max(), -np.inf)
        sl, mass, left = _cells(ld, h)
        total = mass.sum()
        self.x0, self.h = jnp.asarray(x[0]), jnp.asarray(h)
        self.logd = jnp.asarray(left - np.log(total))  # per cell: value at its left end
        self.slope = jnp.asarray(sl)
        self.cum = jnp.asarray(np.concatenate([[0.0], np.cumsum(mass / total)]))

    def __call__(self, u):
        """``(theta, log |d theta / d u|)`` for a scalar ``u``."""
        u = jnp.asarray(u, dtype=float)
        p = jnp.clip(jax.scipy.special.ndtr(u), 1e-300, 1.0 - 1e-16)
        k = jnp.clip(jnp.searchsorted(self.cum, p, side="right") - 1, 0, self.slope.shape[0] - 1)
        m = jnp.maximum(self.cum[k + 1] - self.cum[k], 1e-300)
        q = jnp.clip((p - self.cum[k]) / m, 0.0, 1.0)
        s = self.slope[k]
        t = _cell_inverse(jnp, s, q)
        theta = self.x0 + self.h * (k + t)
        log_f = self.logd[k] + s * t  # normalised density at theta
        return theta, jax.scipy.stats.norm.logpdf(u) - log_f
