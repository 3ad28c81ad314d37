"""First-order conditional estimation with interaction (FOCE-I), NONMEM's METHOD=1 INTERACTION.

Per subject ``i`` with observations ``y_j``, predictions ``f_j(eta)`` and residual variances
``R_j(eta)`` (the error model linearised in eps at eps = 0, evaluated at the subject's eta: the
"interaction"), the conditional objective is

    O_i(eta) = sum_j [log R_j + (y_j - f_j)^2 / R_j] + eta' OMEGA^-1 eta.

The inner problem finds the mode ``eta_i`` (empirical Bayes estimate) by damped Newton steps
(Levenberg-Marquardt on the expected Hessian, in a ``lax.while_loop``, vmapped over subjects).
The outer objective is the Laplace approximation of -2 log-likelihood with the expected
(Fisher) information in place of the Hessian,

    OFV = sum_i [O_i(eta_i) + log det OMEGA + log det H_i],
    H_i = OMEGA^-1 + sum_j [G_j G_j' / R_j + (dR_j dR_j') / (2 R_j^2)],   G = df/deta, dR = dR/deta,

which is NONMEM's objective function value: the constant ``n log(2 pi)`` (n observations) is
omitted, exactly as NONMEM omits it. The mode enters through ``jax.lax.custom_root``, so
gradients of the OFV with respect to the population parameters differentiate through the inner
solve by the implicit function theorem (no unrolled iterations). The outer optimiser is scipy's
BFGS on the unconstrained parameters, started with the
outer-product (BHHH) approximation of the Hessian as its metric (:mod:`pkpd.population.params`).

Standard errors: the sandwich ``R^-1 S R^-1`` (NONMEM's default $COVARIANCE), with ``R`` the
Hessian of the OFV in the natural parameters (central differences of its exact gradient, each
point with its own re-estimated modes) and ``S`` the sum over subjects of the outer products of
the per-subject OFV gradients; ``matrix="R"`` gives ``2 R^-1``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from .likelihood import _first_order
from .model import ESTIMATORS, PopulationModel

#: Inner (EBE) solver: gradient tolerance on O_i and the iteration cap (it also stops when the
#: Levenberg-Marquardt damping exceeds 1e8: no step decreases O_i at machine precision).
INNER_TOL = 1e-8
INNER_MAXIT = 200
#: Relative step of the central differences of the OFV in p (ODE backend only).
FD_STEP = 1e-4


def _objective_parts(r, res, m, g_f, g_r, eta, omega_inv):
    """O_i, its gradient and the expected information H_i (see the module docstring)."""
    o = jnp.sum(jnp.where(m, jnp.log(r) + res**2 / r, 0.0)) + eta @ omega_inv @ eta
    grad = jnp.einsum("pjq,pj->q", g_r, (1.0 / r - res**2 / r**2)) - 2.0 * jnp.einsum("pjq,pj->q", g_f, res / r)
    grad = grad + 2.0 * omega_inv @ eta
    h = (
        omega_inv
        + jnp.einsum("pjq,pjk,pj->qk", g_f, g_f, 1.0 / r)
        + 0.5 * jnp.einsum("pjq,pjk,pj->qk", g_r, g_r, 1 / r**2)
    )
    return o, grad, h


def _inner(model, theta, omega_inv, sigma_m, subj, eta0, interaction=True):
    """Mode of O_i by Levenberg-Marquardt steps on 2 H_i (a positive definite Newton matrix)."""

    def evaluate(eta):
        _, r, res, m, g_f, g_r = _first_order(model, theta, sigma_m, eta, subj, interaction)
        return _objective_parts(r, res, m, g_f, g_r, eta, omega_inv)

    def cond(c):  # stop at the tolerance, the iteration cap, or when no step decreases O any more
        return (c[4] < INNER_MAXIT) & (jnp.max(jnp.abs(c[2])) > INNER_TOL) & (c[5] < 1e8)

    def body(c):
        eta, o, g, h, it, lam = c
        q = eta.shape[0]
        step = -jnp.linalg.solve(2.0 * h + lam * jnp.eye(q), g)
        o_n, g_n, h_n = evaluate(eta + step)
        ok = jnp.isfinite(o_n) & (o_n <= o + 1e-12 * jnp.abs(o))
        pick = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
        return (
            pick(eta + step, eta),
            pick(o_n, o),
            pick(g_n, g),
            pick(h_n, h),
            it + 1,
            jnp.where(ok, lam * 0.1, jnp.maximum(lam * 10.0, 1e-6)),
        )

    o0, g0, h0 = evaluate(eta0)
    eta, *_ = jax.lax.while_loop(cond, body, (eta0, o0, g0, h0, jnp.asarray(0), jnp.asarray(0.0)))
    return eta


def subject_ofv(model, theta, omega_m, sigma_m, subj, eta0, interaction=True):
    """(OFV_i, eta_i): the Laplace/FOCE-I objective of one subject and its mode."""
    omega_inv = jnp.linalg.inv(omega_m)

    def grad_o(eta):
        _, r, res, m, g_f, g_r = _first_order(model, theta, sigma_m, eta, subj, interaction)
        return _objective_parts(r, res, m, g_f, g_r, eta, omega_inv)[1]

    def solve(_f, guess):
        return _inner(model, theta, omega_inv, sigma_m, subj, guess, interaction)

    def tangent_solve(g, y):
        return jnp.linalg.solve(jax.jacfwd(g)(y), y)

    eta = jax.lax.custom_root(grad_o, jax.lax.stop_gradient(eta0), solve, tangent_solve)
    _, r, res, m, g_f, g_r = _first_order(model, theta, sigma_m, eta, subj, interaction)
    o, _, h = _objective_parts(r, res, m, g_f, g_r, eta, omega_inv)
    _, logdet_o = jnp.linalg.slogdet(omega_m)
    _, logdet_h = jnp.linalg.slogdet(h)
    return o + logdet_o + logdet_h, eta


def ofv_terms(model, theta, omega, sigma, eta0, interaction=True, arrays=None):
    """Per-subject OFV (S,) and modes (S, q) at natural parameter values (vmapped over subjects)."""
    omega_m = model.params.omega.matrix(omega)
    sigma_m = model.params.sigma.matrix(sigma)
    return jax.vmap(lambda subj, e0: subject_ofv(model, theta, omega_m, sigma_m, subj, e0, interaction))(
        model._arrays if arrays is None else arrays, eta0
    )


def _per_subject_fn(model: PopulationModel, interaction: bool):
    """Jitted ``(p, eta0, arrays) -> (OFV_i, dOFV_i/dp, eta_i)``, cached on the model's structure
    (shared by :meth:`PopulationModel.with_records` copies, so that new data of the same shape
    never recompiles)."""
    key = ("per_subject", interaction, tuple(sorted(model._flags.items())))
    if key in model._cache:
        return model._cache[key]
    pr = model.params
    forward = model.backend == "solve"

    def per_subject(p, eta0, arrays):
        def one(subj, e0):
            def f(p):
                th, om, sg = pr.from_p(p)
                om_m, sg_m = pr.omega.matrix(om), pr.sigma.matrix(sg)
                return subject_ofv(model, th, om_m, sg_m, subj, e0, interaction)

            if forward:
                # diffrax's ODE path: the OFV needs first derivatives in eta only (forward mode);
                # its gradient in p is taken by central differences (as NONMEM does), since
                # nested forward mode through a stiff adaptive solve is not reliable
                o, eta = f(p)
                h = FD_STEP * jnp.maximum(jnp.abs(p), 1e-3)
                basis = jnp.diag(h)
                g = jax.vmap(lambda e, hk: (f(p + e)[0] - f(p - e)[0]) / (2 * hk))(basis, h)
            else:
                (o, eta), g = jax.value_and_grad(f, has_aux=True)(p)
            return o, g, jax.lax.stop_gradient(eta)

        return jax.vmap(one)(arrays, eta0)

    p_of_x = lambda x: pr.to_p(*pr.from_x(x))  # noqa: E731
    fns = (jax.jit(per_subject), jax.jit(lambda x: (p_of_x(x), jax.jacfwd(p_of_x)(x))))
    model._cache[key] = fns
    return fns


class _Objective:
    """The OFV of a model, per subject, with per-subject gradients in the natural estimated
    parameters ``p``: one compiled function serves the fit (through the chain rule to the
    optimiser's x), the R matrix (finite differences of the gradient) and the S matrix."""

    def __init__(self, model: PopulationModel, interaction: bool = True):
        self.model = model
        self.per_subject, self.p_and_jac = _per_subject_fn(model, interaction)
        self.eta = jnp.zeros((model.records.n_subjects, model.params.omega.dim))
        self.best, self.best_eta = np.inf, self.eta

    def bhhh_inverse(self, x):
        """``2 S^-1`` in x (S: sum of outer products of the per-subject OFV gradients), the inverse
        of the outer-product (BHHH) approximation of the OFV's Hessian: the optimiser's first
        metric, so that its first steps are Newton-scaled."""
        p, jac = self.p_and_jac(jnp.asarray(x))
        g_i = self.value_grad_p(p, self.best_eta)[3] @ np.asarray(jac)
        w, v = np.linalg.eigh(g_i.T @ g_i)
        w = np.maximum(w, 1e-10 * max(w.max(), 1e-300))  # S is singular with fewer subjects than parameters
        h = (v * (2.0 / w)) @ v.T
        return 0.5 * (h + h.T)

    def value_grad_p(self, p, eta0=None):
        o, g, eta = self.per_subject(jnp.asarray(p), self.eta if eta0 is None else eta0, self.model._arrays)
        return float(jnp.sum(o)), np.asarray(jnp.sum(g, axis=0)), eta, np.asarray(g)

    def __call__(self, x):
        """(OFV, gradient in x). The inner solves start from the modes of the best point so far
        (not of the last trial point of a line search), so that the OFV is a deterministic
        function of x between improvements."""
        p, jac = self.p_and_jac(jnp.asarray(x))
        try:
            v, g, eta, _ = self.value_grad_p(p, self.best_eta)
        except jax.errors.JaxRuntimeError:  # e.g. an ODE solver's linear solve met NaN: a bad trial point
            return 1e300, np.zeros(np.shape(x))
        g = np.asarray(jac).T @ g
        if not (np.isfinite(v) and np.all(np.isfinite(g))):
            return 1e300, np.zeros_like(g)
        self.eta = eta
        if v < self.best:
            self.best, self.best_eta = v, eta
        return v, g


def covariance(obj: _Objective, p, matrix: str = "sandwich", rel_step: float = 1e-4):
    """Covariance of the estimated natural parameters ``p`` (see the module docstring)."""
    p = np.asarray(p, float)
    n = p.size
    r = np.zeros((n, n))
    for k in range(n):
        h = rel_step * max(abs(p[k]), 1e-3)
        e = np.zeros(n)
        e[k] = h
        gp = obj.value_grad_p(p + e)[1]
        gm = obj.value_grad_p(p - e)[1]
        r[:, k] = (gp - gm) / (2 * h)
    r = 0.5 * (r + r.T)
    rinv = np.linalg.inv(r)
    if matrix == "R":
        return 2.0 * rinv, r, None
    if matrix != "sandwich":
        raise ValueError(f"matrix={matrix!r} is not known; valid: 'sandwich', 'R'")
    jac = obj.value_grad_p(p)[3]
    s = jac.T @ jac
    return rinv @ s @ rinv, r, s


def fit_focei(
    model: PopulationModel,
    *,
    x0=None,
    gtol: float = 1e-4,
    maxiter: int = 500,
    restarts: int = 5,
    se: bool = True,
    matrix: str = "sandwich",
    verbose: bool = False,
    interaction: bool = True,
):
    """Fit ``model`` by FOCE-I (see the module docstring). Returns a :class:`PopulationResult`.

    ``x0``: start in the unconstrained parameters (default: the model's initial values);
    ``gtol``: the gradient tolerance on the OFV (BFGS starts from the BHHH metric, see
    :meth:`_Objective.bhhh_inverse`, and is restarted up to ``restarts`` times from where it
    stopped when it ends without meeting the tolerance); ``se``: compute the covariance matrix
    (``matrix``: "sandwich" or "R"); ``interaction=False``: NONMEM's FOCE (METHOD=1 without
    INTERACTION: the residual variance at eta = 0). ``result.timing`` holds the compile time (first
    evaluation), the optimisation time after compilation and the covariance time (s).
    """
    from scipy.optimize import minimize

    from .result import PopulationResult

    obj = _Objective(model, interaction)
    x = np.asarray(model.params.x0() if x0 is None else x0, float)
    t0 = time.perf_counter()
    f0, _ = obj(x)
    if not np.isfinite(f0) or f0 >= 1e300:
        raise FloatingPointError(
            f"the OFV is not finite at the initial estimates ({dict(zip(model.params.p_names(), np.asarray(model.params.to_p(*model.params.from_x(x)))))})"
        )
    t1 = time.perf_counter()
    opt, nit = None, 0
    for _ in range(restarts + 1):  # restarted from its end point (a fresh inverse Hessian)
        opts = dict(gtol=gtol, maxiter=maxiter, hess_inv0=obj.bhhh_inverse(x))
        opt = minimize(obj, x, jac=True, method="BFGS", options=opts)
        nit += int(opt.nit)
        moved = np.max(np.abs(opt.x - x))
        x = opt.x
        if opt.success or moved < 1e-8:
            break
    opt.nit = nit
    _, g_end = obj(opt.x)  # also leaves the modes of the optimum in obj.eta
    # BFGS reports "precision loss" when the line search cannot improve an OFV that is flat to
    # its noise (the inner solves leave ~1e-7 in it); a gradient below 1e-2 OFV units per unit
    # of the unconstrained parameters is converged for every purpose (SEs, comparisons).
    converged = bool(opt.success) or float(np.max(np.abs(g_end))) < 1e-2
    t2 = time.perf_counter()
    theta, omega, sigma = (np.asarray(a) for a in model.params.from_x(jnp.asarray(opt.x)))
    p = np.asarray(model.params.to_p(theta, omega, sigma))
    cov = r = s = None
    if se:
        cov, r, s = covariance(obj, p, matrix=matrix)
    t3 = time.perf_counter()
    return PopulationResult(
        model=model,
        theta=theta,
        omega=omega,
        sigma=sigma,
        ofv=float(opt.fun),
        eta=np.asarray(obj.eta),
        covariance=cov,
        r_matrix=r,
        s_matrix=s,
        converged=converged,
        message=str(opt.message),
        n_iterations=int(opt.nit),
        timing=dict(compile_s=t1 - t0, fit_s=t2 - t1, covariance_s=t3 - t2),
        optimizer=opt,
        interaction=interaction,
    )


ESTIMATORS["focei"] = lambda model, **options: fit_focei(model, interaction=True, **options)
ESTIMATORS["foce"] = lambda model, **options: fit_focei(model, interaction=False, **options)
