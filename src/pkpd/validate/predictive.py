"""Posterior predictive distributions of data rows, as the joint likelihood defines them.

A row ``i`` of study ``s`` is observed as ``y_i ~ Normal(pred_i(z) exp(b_s), sd_i)``
(:mod:`pkpd.calibrate`): ``pred_i(z)`` the model's prediction at parameters ``z``, ``b_s`` the
study's multiplicative random effect, ``sd_i`` the row's reported standard error combined with
the residual error model (:meth:`pkpd.fit.Problem.sd`). Its predictive distribution is the mixture
over posterior draws ``z_d`` and over ``b_s ~ Normal(centre, scale)`` (per draw and row) of those
normals. For the CDF and the quantiles the effect is integrated on :data:`NODES` equal-probability
nodes (``b = centre + scale Phi^-1((k + 1/2) / NODES)``; Gauss-Hermite nodes, exact for the moments,
leave a visible staircase in the CDF when the observation sd is small against their spacing); the
moments are in closed form (``E[e^b] = e^(centre + scale^2 / 2)``).
"""

from __future__ import annotations

import jax.scipy.special as jss
import numpy as np

#: Equal-probability nodes integrating each study effect in the CDF and the quantiles.
NODES = 64


def ndtr(x) -> np.ndarray:
    """Standard normal CDF (numpy in, numpy out)."""
    return np.asarray(jss.ndtr(np.asarray(x, dtype=float)))


#: Central predictive intervals reported (as fractions).
LEVELS = (0.5, 0.9)


def study_effect_conditional(pred, value, sd, study, n_studies: int, tau: float, *, iterations: int = 50):
    """Conditional posterior ``Normal(centre, scale)`` of every study effect given predictions.

    ``pred``: ``(draws, rows)`` predictions without the study effect; ``value``, ``sd``: ``(rows,)``
    observed values and their sds; ``study``: ``(rows,)`` integer study index in
    ``[0, n_studies)``; ``tau``: the prior sd of ``b`` (log scale). The mode of
    ``sum_i log N(y_i | pred_i e^b, sd_i) + log N(b | 0, tau)`` by damped Newton (Gauss-Newton
    curvature, steps clipped at 1), and ``scale = 1 / sqrt(curvature)`` there (the Laplace of the
    one-dimensional posterior). Returns ``(centre, scale)``, each ``(draws, n_studies)``; a study
    without rows gets ``(0, tau)``."""
    pred = np.atleast_2d(np.asarray(pred, dtype=float))
    value, sd = np.asarray(value, dtype=float), np.asarray(sd, dtype=float)
    study = np.asarray(study, dtype=int)
    if not (pred.shape[1] == value.shape[0] == sd.shape[0] == study.shape[0]):
        raise ValueError(f"pred {pred.shape}, value {value.shape}, sd {sd.shape}, study {study.shape}: rows differ")
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau={tau!r} must be a positive finite number (sd of the log study effect)")
    if study.size and (study.min() < 0 or study.max() >= n_studies):
        raise ValueError(f"study indices must lie in [0, {n_studies}); got {study.min()}..{study.max()}")
    onehot = np.zeros((study.size, int(n_studies)))
    onehot[np.arange(study.size), study] = 1.0
    b = np.zeros((pred.shape[0], int(n_studies)))
    h = np.full_like(b, 1.0 / tau**2)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(int(iterations)):
            e = pred * np.exp(b @ onehot.T)
            a, r = e / sd, (e - value) / sd
            g = -(a * r) @ onehot - b / tau**2
            h = (a * a) @ onehot + 1.0 / tau**2
            step = np.clip(g / h, -1.0, 1.0)
            b = b + np.where(np.isfinite(step), step, 0.0)
            if np.all(np.abs(step[np.isfinite(step)]) < 1e-10):
                break
    return b, 1.0 / np.sqrt(h)


class Predictive:
    """The predictive mixture of a set of rows (see the module docstring).

    ``pred``: ``(draws, rows)``; ``centre``, ``scale``: the study effect's normal per draw and row
    (``(draws, rows)``, or ``(rows,)`` shared by all draws); ``sd``: ``(rows,)``. Draws whose
    prediction of a row is not finite (a failed solve) carry no weight for that row; ``n_draws``
    says how many did."""

    def __init__(self, pred, centre, scale, sd, *, nodes: int = NODES):
        pred = np.atleast_2d(np.asarray(pred, dtype=float))
        D, n = pred.shape
        centre = np.broadcast_to(np.asarray(centre, dtype=float), (D, n))
        scale = np.broadcast_to(np.asarray(scale, dtype=float), (D, n))
        sd = np.asarray(sd, dtype=float)
        if sd.shape != (n,) or not np.all(np.isfinite(sd) & (sd > 0)):
            raise ValueError(f"sd must be {n} positive finite numbers; got shape {sd.shape}")
        if np.any(scale < 0):
            raise ValueError("scale (sd of the study effect) must be >= 0")
        x = np.asarray(jss.ndtri((np.arange(int(nodes)) + 0.5) / int(nodes)))
        ok = np.isfinite(pred) & np.isfinite(centre) & np.isfinite(scale)
        #: finite draws per row
        self.n_draws = ok.sum(axis=0)
        self._wd = np.where(ok, 1.0, 0.0) / np.maximum(self.n_draws, 1)[None, :]
        self._pred, self._centre, self._scale = (np.where(ok, a, 0.0) for a in (pred, centre, scale))
        with np.errstate(over="ignore", invalid="ignore"):
            b = self._centre[:, :, None] + self._scale[:, :, None] * x[None, None, :]
            #: component means (draws, rows, nodes) and weights (same shape, summing to 1 per row)
            self.mu = self._pred[:, :, None] * np.exp(b)
        self.w = np.broadcast_to(self._wd[:, :, None] / int(nodes), self.mu.shape)
        self.sd = sd

    def cdf(self, y) -> np.ndarray:
        """The mixture's CDF at ``y`` (one value per row); NaN for a row without finite draws."""
        y = np.asarray(y, dtype=float)
        out = np.sum(self.w * ndtr((y[None, :, None] - self.mu) / self.sd[None, :, None]), axis=(0, 2))
        return np.where(self.n_draws > 0, out, np.nan)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of the mixture per row (closed form in the study effect)."""
        c, s2 = self._centre, self._scale**2
        mean = np.sum(self._wd * self._pred * np.exp(c + s2 / 2), axis=0)
        second = np.sum(self._wd * self._pred**2 * np.exp(2 * c + 2 * s2), axis=0) + self.sd**2
        return mean, np.sqrt(np.maximum(second - mean**2, 0.0))

    def quantile(self, q: float, *, iterations: int = 80) -> np.ndarray:
        """The ``q`` quantile of the mixture per row (bisection on :meth:`cdf`)."""
        if not 0.0 < q < 1.0:
            raise ValueError(f"q={q!r} must lie in (0, 1)")
        comp = np.where(self.w > 0, self.mu, np.nan)
        lo = np.nanmin(comp, axis=(0, 2)) - 10.0 * self.sd
        hi = np.nanmax(comp, axis=(0, 2)) + 10.0 * self.sd
        lo, hi = np.nan_to_num(lo), np.nan_to_num(hi)
        for _ in range(int(iterations)):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < q
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return np.where(self.n_draws > 0, 0.5 * (lo + hi), np.nan)

    def describe(self, value) -> dict:
        """Per row: PIT (CDF at the observed value), inside each central interval of
        :data:`LEVELS`, the interval ends, the predictive median, mean, sd and the standardised
        residual ``(value - mean) / sd``."""
        value = np.asarray(value, dtype=float)
        pit = self.cdf(value)
        mean, sd = self.moments()
        out = dict(pit=pit, median=self.quantile(0.5), mean=mean, sd=sd, z=(value - mean) / sd)
        for level in LEVELS:
            a = (1.0 - level) / 2.0
            out[f"lo_{level:g}"] = self.quantile(a)
            out[f"hi_{level:g}"] = self.quantile(1.0 - a)
            out[f"inside_{level:g}"] = np.abs(pit - 0.5) <= level / 2.0
        return out


def coverage(rows, group: str | None = None) -> dict:
    """Fraction of rows inside each central interval: ``{"0.5": .., "0.9": .., "n": ..}``, overall
    (``group=None``) or ``{value: {...}}`` per value of the column ``group`` of ``rows``."""

    def one(df):
        d = {f"{level:g}": float(df[f"inside_{level:g}"].mean()) if len(df) else float("nan") for level in LEVELS}
        d["n"] = int(len(df))
        return d

    if group is None:
        return one(rows)
    return {str(k): one(df) for k, df in rows.groupby(group, sort=True)}
