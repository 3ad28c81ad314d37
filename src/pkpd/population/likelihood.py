"""The per-subject likelihood terms of a population model and their first-order linearisation in
eta: what FOCE's objective (:mod:`.foce`) and the CWRES of the diagnostics (:mod:`.diagnostics`)
are built from."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _terms(model, theta, sigma_m, eta, subj, interaction=True):
    """(f, R, residual, mask) over (P, J); R is 1 and the residual 0 where masked. Without
    ``interaction`` (NONMEM's FOCE), R is evaluated at eta = 0."""
    f, r = model.subject_predictions(theta, sigma_m, eta, subj)
    if not interaction:
        r = model.subject_predictions(theta, sigma_m, jnp.zeros_like(eta), subj)[1]
    m = subj["obs_mask"] & subj["part_mask"][:, None]
    return f, jnp.where(m, r, 1.0), jnp.where(m, subj["obs_dv"] - f, 0.0), m


def _first_order(model, theta, sigma_m, eta, subj, interaction=True):
    """f, R, residuals, mask and their eta-Jacobians G (P, J, q), dR (P, J, q), by forward mode
    (one linearisation: the values ride along as auxiliary outputs)."""

    def fr(e):
        f, r, res, m = _terms(model, theta, sigma_m, e, subj, interaction)
        return (f, r), (f, r, res, m)

    (g_f, g_r), (f, r, res, m) = jax.jacfwd(fr, has_aux=True)(eta)
    return f, r, res, m, jnp.where(m[..., None], g_f, 0.0), jnp.where(m[..., None], g_r, 0.0)
