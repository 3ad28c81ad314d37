"""Refitting the joint calibration without some rows: MAP by Levenberg-Marquardt and its Laplace.

The same objective as :func:`pkpd.calibrate.calibrate` (every usable row's standardised residual,
the study effects, the priors from the cards), with the left-out rows' residuals set to zero, so
one compiled :class:`pkpd.calibrate.JointProblem` serves every fold. Warm-started from the shipped
MAP; a left-out study then has no rows and its effect stays at its prior ``Normal(0, tau)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Refit:
    """A fold's MAP ``x`` (parameters, then study effects), the Laplace covariance of ``x``, the
    objective, whether Levenberg-Marquardt converged, its iterations and wall time (s)."""

    x: np.ndarray
    cov: np.ndarray
    objective: float
    converged: bool
    iterations: int
    seconds: float


def _masked(jp, x, keep):
    r, J = jp.linearise(x)
    w = np.concatenate([keep.astype(float), np.ones(r.size - keep.size)])
    return r * w, J * w[:, None]


#: A fold's refit stops when the Gauss-Newton model predicts less than this decrease of the
#: objective (log-density units) from a full step: the MAP is then closer than that to the optimum
#: of the local quadratic model, far inside the posterior's width (a log density drop of 0.5 is one sd).
PREDICTED_DECREASE = 1e-3


def refit(jp, x0, keep, *, max_iter: int = 40, tol: float = PREDICTED_DECREASE) -> Refit:
    """MAP of ``jp`` (a :class:`pkpd.calibrate.JointProblem`) on the rows where ``keep`` is true
    (boolean, one per data row in ``jp.linearise`` order), from ``x0``, and the Laplace covariance
    ``(J^T J)^-1`` there. Stops when the undamped Gauss-Newton step predicts a decrease of the
    objective below ``tol`` (:data:`PREDICTED_DECREASE`), or the objective falls by less than 1e-7
    relative, or the largest step is below 1e-5 (the calibration's rules)."""
    keep = np.asarray(keep, dtype=bool)
    x = np.asarray(x0, dtype=float).copy()
    if x.shape != (jp.K + jp.S,):
        raise ValueError(f"x0 has shape {x.shape}; expected ({jp.K + jp.S},) = parameters + study effects")
    t0 = time.perf_counter()
    r, J = _masked(jp, x, keep)
    if keep.size != r.size - x.size:
        raise ValueError(f"keep has {keep.size} entries; the problem has {r.size - x.size} data rows")
    obj = 0.5 * float(r @ r)
    lam, converged, it = 1e-3, False, 0
    while it < int(max_iter):
        A, g = J.T @ J, J.T @ r
        if 0.5 * float(g @ np.linalg.solve(A, g)) < tol:
            converged = True
            break
        it += 1
        step = -np.linalg.solve(A + lam * np.diag(np.diag(A)), g)
        try:
            r_new, J_new = _masked(jp, x + step, keep)
            finite = np.all(np.isfinite(r_new)) and np.all(np.isfinite(J_new))
            obj_new = 0.5 * float(r_new @ r_new) if finite else np.inf
        except Exception:  # noqa: BLE001 -- a failed solve at a trial point is a rejected step
            obj_new = np.inf
        if obj_new < obj:
            rel = (obj - obj_new) / max(obj, 1e-12)
            x, r, J, obj = x + step, r_new, J_new, obj_new
            lam = max(lam / 3.0, 1e-9)
            if rel < 1e-7 or np.max(np.abs(step)) < 1e-5:
                converged = True
                break
        else:
            lam *= 10.0
            if lam > 1e8:
                converged = bool(np.max(np.abs(g)) < 1e-3)
                break
    cov = np.linalg.inv(J.T @ J)
    return Refit(
        x=x,
        cov=0.5 * (cov + cov.T),
        objective=obj,
        converged=bool(converged),
        iterations=it,
        seconds=time.perf_counter() - t0,
    )


def laplace_draws(fit: Refit, K: int, n: int, rng) -> np.ndarray:
    """``n`` draws of the ``K`` parameters (study effects marginalised) from the fold's Laplace."""
    chol = np.linalg.cholesky(fit.cov[:K, :K] + 1e-12 * np.eye(K))
    return fit.x[:K] + rng.standard_normal((int(n), K)) @ chol.T
